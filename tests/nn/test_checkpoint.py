"""Tests for checkpoints: round trip with identical scores, checksum sidecar, plain-type metadata."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from behavior_stream.nn import checkpoint as checkpoint_module
from behavior_stream.nn.categories import CategoryVocab
from behavior_stream.nn.checkpoint import (
    CheckpointError,
    ChecksumError,
    load_checkpoint,
    save_checkpoint,
    sidecar_path,
    verify_checksum,
)
from behavior_stream.nn.config import LEGACY_OFF
from behavior_stream.nn.features import encode_sequences
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.vocab import ItemVocab
from behavior_stream.stream.core.engine import ModelEngine
from tests.seqkit import CATALOG, sequences, small_config, small_model, tiny_vocab

METADATA = {
    "history": [{"epoch": 1, "train_loss": 3.5, "valid_recall": 0.25}],
    "seed": 7,
    "dataset": {"n": 3},
}


def scores(model: SequenceModel, vocab: ItemVocab) -> torch.Tensor:
    with torch.no_grad():
        out = model(encode_sequences(sequences(), vocab, model.config), return_state=True)
        assert out.state is not None
        return model.scores(out.state)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_round_trip_gives_identical_scores(tmp_path: Path, cell: str) -> None:
    vocab = tiny_vocab()
    model = small_model(vocab, cell=cell, num_layers=2)
    path = tmp_path / "sub" / "model.pt"
    version = save_checkpoint(path, model, vocab, METADATA, categories={"item1": "shoes"})
    assert version.startswith(f"{cell}-") and len(version) == len(cell) + 13
    assert sidecar_path(path).read_text().split()[1] == "model.pt"
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.model_version == version == loaded.metadata["model_version"]
    assert loaded.config == model.config and loaded.vocab == vocab
    assert loaded.metadata["history"] == METADATA["history"]
    assert loaded.item_categories == {"item1": "shoes"}
    assert torch.equal(scores(loaded.model, loaded.vocab), scores(model, vocab))


def test_version_is_a_content_hash(tmp_path: Path) -> None:
    vocab = tiny_vocab()
    same = [save_checkpoint(tmp_path / f"{i}.pt", small_model(vocab, seed=1), vocab, {}) for i in range(2)]
    other = save_checkpoint(tmp_path / "2.pt", small_model(vocab, seed=2), vocab, {})
    assert same[0] == same[1] != other


def test_checksum_mismatch_raises(tmp_path: Path) -> None:
    vocab = tiny_vocab()
    path = tmp_path / "model.pt"
    save_checkpoint(path, small_model(vocab), vocab, METADATA)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="does not match"):
        load_checkpoint(path)


def test_loads_without_sidecar(tmp_path: Path) -> None:
    vocab = tiny_vocab()
    path = tmp_path / "model.pt"
    version = save_checkpoint(path, small_model(vocab), vocab, {})
    sidecar_path(path).unlink()
    assert load_checkpoint(path).model_version == version


def test_rejects_non_plain_metadata_and_mismatched_vocab(tmp_path: Path) -> None:
    vocab = tiny_vocab()
    model = small_model(vocab)
    with pytest.raises(TypeError, match=r"metadata\.when"):
        save_checkpoint(tmp_path / "a.pt", model, vocab, {"when": object()})
    with pytest.raises(ValueError, match="not built together"):
        save_checkpoint(tmp_path / "b.pt", model, ItemVocab(("x",), 4), {})
    assert not (tmp_path / "a.pt").exists()


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"format_version": 99}, foreign)
    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        load_checkpoint(foreign)


def publish_watched(
    path: Path, model: SequenceModel, vocab: ItemVocab, monkeypatch: pytest.MonkeyPatch
) -> list:
    """Save a checkpoint while checking, at every rename, what a reader of `path` sees: nothing,
    or a file that verifies against its sidecar and loads as one of the published versions."""
    seen: list = []
    real_replace = os.replace

    def observe() -> None:
        if path.exists():
            assert verify_checksum(path), "a checkpoint without a sidecar is visible"
            seen.append(load_checkpoint(path).model_version)
        else:
            seen.append(None)

    def replace(src: object, dst: object) -> None:
        observe()
        real_replace(src, dst)  # type: ignore[arg-type]
        observe()

    monkeypatch.setattr(checkpoint_module.os, "replace", replace)
    save_checkpoint(path, model, vocab, {})
    monkeypatch.setattr(checkpoint_module.os, "replace", real_replace)
    return seen


def test_publish_never_shows_a_file_its_sidecar_does_not_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vocab = tiny_vocab()
    path = tmp_path / "model.pt"
    first, second = small_model(vocab, seed=1), small_model(vocab, seed=2)
    v1 = checkpoint_module.model_version(first, vocab)
    v2 = checkpoint_module.model_version(second, vocab)
    # First publish: the sidecar is in place before the file appears.
    seen = publish_watched(path, first, vocab, monkeypatch)
    assert seen[0] is None and seen[-1] == v1 and set(seen) == {None, v1}
    # Replacing a version: every instant shows the old or the new one, both verified.
    seen = publish_watched(path, second, vocab, monkeypatch)
    assert seen[0] == v1 and seen[-1] == v2 and set(seen) == {v1, v2}
    assert sidecar_path(path).read_text() == f"{checkpoint_module.file_sha256(path)}  model.pt\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.sha256"]


def test_failed_publish_keeps_the_old_version_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vocab = tiny_vocab()
    path = tmp_path / "model.pt"
    v1 = save_checkpoint(path, small_model(vocab, seed=1), vocab, {})
    real_replace = os.replace

    def replace(src: object, dst: object) -> None:
        if Path(str(dst)) == path:  # a crash at the instant the new version would appear
            raise OSError("disk gone")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(checkpoint_module.os, "replace", replace)
    with pytest.raises(OSError, match="disk gone"):
        save_checkpoint(path, small_model(vocab, seed=2), vocab, {})
    monkeypatch.setattr(checkpoint_module.os, "replace", real_replace)
    assert verify_checksum(path) and load_checkpoint(path).model_version == v1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.sha256"]


def test_stale_sidecar_and_foreign_bytes_name_the_file(tmp_path: Path) -> None:
    vocab = tiny_vocab()
    path = tmp_path / "model.pt"
    save_checkpoint(tmp_path / "other.pt", small_model(vocab, seed=1), vocab, {})
    save_checkpoint(path, small_model(vocab, seed=2), vocab, {})
    shutil.copy(tmp_path / "other.pt", path)  # new bytes, the old sidecar: not yet verified
    with pytest.raises(ChecksumError, match=r"model\.pt: SHA-256"):
        load_checkpoint(path)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"notes\.pt: not a torch checkpoint"):
        load_checkpoint(text)


def category_model(vocab: ItemVocab, side: dict[str, str]) -> SequenceModel:
    torch.manual_seed(0)
    cats = CategoryVocab.build(side, vocab.items)
    return SequenceModel(small_config(future_k=2), vocab.n_items, vocab.n_inputs, cats, vocab.items).eval()


def category_scores(model: SequenceModel, vocab: ItemVocab) -> torch.Tensor:
    with torch.no_grad():
        batch = encode_sequences(sequences(), vocab, model.config, model.categories)
        out = model(batch, return_state=True)
        assert out.state is not None
        return model.scores(out.state)


def test_round_trip_with_categories(tmp_path: Path) -> None:
    vocab = tiny_vocab()
    # item25 is outside the item vocabulary: its category must survive the round trip too.
    side = {"item1": "shoes", "item2": "hats", "item25": "hats"}
    model = category_model(vocab, side)
    version = save_checkpoint(tmp_path / "m.pt", model, vocab, METADATA, categories={"item1": "shoes"})
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.model.categories == model.categories and loaded.model.categories is not None
    assert loaded.model.categories.index("item25") == model.categories.index("item25") >= 2  # type: ignore[union-attr]
    assert loaded.item_categories == side
    assert loaded.model.heads is not None and loaded.model.heads.has_future
    assert torch.equal(category_scores(loaded.model, vocab), category_scores(model, vocab))
    # The category map is part of what the model does, so of its version.
    other = category_model(vocab, {**side, "item25": "shoes"})
    assert save_checkpoint(tmp_path / "o.pt", other, vocab, METADATA) != version


def test_a_checkpoint_from_before_categories_and_heads_loads_with_them_off(tmp_path: Path) -> None:
    vocab = tiny_vocab()
    torch.manual_seed(0)
    old = SequenceModel(small_config(**LEGACY_OFF), vocab.n_items, vocab.n_inputs).eval()
    path = tmp_path / "old.pt"
    save_checkpoint(path, old, vocab, METADATA)
    # Rewrite it as the earlier format wrote it: no new config keys, no category_names.
    data = torch.load(path, weights_only=True)
    for key in LEGACY_OFF:
        del data["config"][key]
    del data["category_names"]
    torch.save(data, path)
    sidecar_path(path).unlink()
    loaded = load_checkpoint(path)
    assert loaded.model.categories is None and loaded.model.heads is None
    assert loaded.config.category_dim == 0 and not loaded.config.aux_heads
    assert torch.equal(scores(loaded.model, vocab), scores(old, vocab))
    # A checkpoint whose weights need categories it does not name fails loudly, naming the file.
    new = category_model(vocab, {"item1": "shoes"})
    save_checkpoint(path, new, vocab, METADATA)
    data = torch.load(path, weights_only=True)
    data["category_names"] = None
    torch.save(data, path)
    sidecar_path(path).unlink()
    needs = r"old\.pt: damaged checkpoint .*read item categories but it names none"
    with pytest.raises(CheckpointError, match=needs):
        load_checkpoint(path)


def test_the_stream_core_steps_a_category_checkpoint_with_its_catalog_map(tmp_path: Path) -> None:
    vocab = tiny_vocab()
    side = {item: f"c{i % 3}" for i, item in enumerate(CATALOG)}  # OOV item20.. have categories too
    model = category_model(vocab, side)
    save_checkpoint(tmp_path / "m.pt", model, vocab, METADATA)
    engine = ModelEngine.from_checkpoint(tmp_path / "m.pt")
    events = sequences((9,), seed=5)[0]
    assert any(e.item_id in CATALOG[20:] for e in events)  # a new item brings its category
    one, whole = engine.fresh_state(), engine.fresh_state()
    last = -1
    for ev in events:  # the per-event step path (`encode_events`) ...
        engine.step_users([one], [[ev]], [last])
        one.last_ts = last = ev.ts
    engine.step_users([whole], [events], [-1])  # ... and the several-events path (`encode_sequences`)
    with torch.no_grad():
        expected = model(encode_sequences([events], vocab, model.config, model.categories)).hidden[0, -1]
        blind = model(encode_sequences([events], vocab, model.config)).hidden[0, -1]
    assert np.abs(one.hidden - expected.numpy()).max() <= 1e-5
    assert np.abs(whole.hidden - expected.numpy()).max() <= 1e-5
    assert np.abs(one.hidden - blind.numpy()).max() > 1e-3
