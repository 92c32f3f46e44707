"""Tests for checkpoints: round trip with identical scores, checksum sidecar, plain-type metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from behavior_stream.nn.checkpoint import ChecksumError, load_checkpoint, save_checkpoint, sidecar_path
from behavior_stream.nn.features import encode_sequences
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.vocab import ItemVocab
from tests.seqkit import sequences, small_model, tiny_vocab

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
