"""Damaged and foreign checkpoints: each is a `CheckpointError` naming the file and the part at fault.

Every damaged checkpoint is a valid one (`tests.streamkit.make_checkpoint`, with item categories
and a training-like metadata) rewritten with `torch.save` without its sidecar, as a hand-edited or
foreign file would be.
"""

from __future__ import annotations

import math
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from behavior_stream.nn.checkpoint import (
    CheckpointError,
    ChecksumError,
    load_checkpoint,
    sidecar_path,
)
from behavior_stream.stream.core.engine import ModelEngine
from tests.streamkit import make_checkpoint

ITEMS = [f"i{n}" for n in range(12)]
CATEGORIES = {item: f"c{n % 3}" for n, item in enumerate(ITEMS)}
# The sections `training.loop` writes that later code reads, in their real shapes.
METADATA: dict[str, Any] = {
    "train_config": {"valid_frac": 0.1, "test_frac": 0.1, "split_unit": "event"},
    "split": {"train": 80, "valid": 10, "test": 10},
    "dataset": {"path": "events.jsonl", "test_path": None},
    "history": [{"epoch": 1, "train_loss": 3.5}],
    "bought_together": {"top_n": 20, "pairs": {"i1": [["i2", 3]], "i2": [["i1", 3]]}},
    "purchase_calibration": {
        "method": "platt",
        "a": 0.5,
        "b": -1.0,
        "n": 100,
        "positives": 20,
        "threshold": 0.3,
    },
}


def valid(tmp_path: Path, name: str = "model.pt") -> Path:
    return make_checkpoint(tmp_path / name, ITEMS, seed=0, categories=CATEGORIES, metadata=METADATA)


def damaged(tmp_path: Path, edit: Callable[[dict[str, Any]], object]) -> Path:
    """A valid checkpoint whose dict `edit` changed in place, saved without a sidecar as `bad.pt`."""
    path = valid(tmp_path, "bad.pt")
    data = torch.load(path, weights_only=True)
    edit(data)
    torch.save(data, path)
    sidecar_path(path).unlink()
    return path


def refused(path: Path, *parts: str) -> str:
    """The one-line `CheckpointError` of loading `path`, checked to name the file and each of `parts`."""
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and len(message) < 300, message
    for part in parts:
        assert part in message, (part, message)
    return message


def test_the_valid_checkpoint_loads(tmp_path: Path) -> None:
    # The baseline of every case below: without the damage, it loads.
    loaded = load_checkpoint(valid(tmp_path))
    assert loaded.vocab.items == tuple(ITEMS) and loaded.metadata["split"] == METADATA["split"]
    assert loaded.item_categories == CATEGORIES


@pytest.mark.parametrize("key", ["metadata", "version", "state_dict", "config", "vocab"])
def test_a_missing_part_is_named(tmp_path: Path, key: str) -> None:
    refused(damaged(tmp_path, lambda d: d.pop(key)), "damaged checkpoint", f"missing {key}")


def set_in(data: dict[str, Any], dotted: str, value: object) -> None:
    *parents, key = dotted.split(".")
    for parent in parents:
        data = data[parent]
    data[key] = value


@pytest.mark.parametrize(
    ("dotted", "value", "says"),
    [
        ("metadata", [1], "metadata is a list, expected a dict"),
        ("version", 3, "version is an int, expected a str"),
        ("config", "gru", "config is a str, expected a dict"),
        ("state_dict", [], "state_dict is a list, expected a dict"),
        ("metadata.split", "abc", "metadata.split is a str, expected a dict"),
        ("metadata.train_config", [0.1], "metadata.train_config is a list"),
        ("metadata.train_config.test_frac", "big", "metadata.train_config.test_frac is a str"),
        ("metadata.dataset.test_path", 5, "metadata.dataset.test_path is an int"),
        ("metadata.history", [1, 2], "metadata.history[0] is an int, expected a dict"),
        ("metadata.bought_together", [1, 2], "metadata.bought_together is a list, expected a dict"),
        ("metadata.bought_together.pairs.i1", [["i2"]], "metadata.bought_together.pairs['i1']"),
        ("metadata.purchase_calibration", "x", "metadata.purchase_calibration is a str"),
        ("metadata.purchase_calibration.a", None, "metadata.purchase_calibration.a is None"),
        ("item_categories", 5, "item_categories is an int, expected a dict"),
        ("item_categories", {"i1": 7}, "item_categories is not a map"),
        ("category_names", "c0", "category_names is a str, expected a list"),
        ("vocab.items", "i1 i2", "vocab.items is a str, expected a list"),
        ("vocab.n_oov_buckets", 0, "vocab.n_oov_buckets must be a positive integer, got 0"),
        ("config.zzz", 1, "config has unknown keys ['zzz']"),
    ],
)
def test_a_part_of_the_wrong_type_is_named(tmp_path: Path, dotted: str, value: object, says: str) -> None:
    refused(damaged(tmp_path, lambda d: set_in(d, dotted, value)), "damaged checkpoint", says)


def test_a_calibration_without_its_coefficients_is_refused(tmp_path: Path) -> None:
    path = damaged(tmp_path, lambda d: d["metadata"]["purchase_calibration"].pop("b"))
    refused(path, "missing metadata.purchase_calibration.b")


def test_vocab_items_that_are_not_strings_are_refused(tmp_path: Path) -> None:
    refused(
        damaged(tmp_path, lambda d: d["vocab"]["items"].__setitem__(3, 42)), "vocab.items holds an int (42)"
    )


def test_duplicated_vocabulary_items_are_refused(tmp_path: Path) -> None:
    # Same length, so the weights still fit: only the repeated ids tell.
    def repeat(data: dict[str, Any]) -> None:
        data["vocab"]["items"][5] = data["vocab"]["items"][4]

    refused(damaged(tmp_path, repeat), "vocab.items repeats item ids", "12 entries, 11 distinct", "'i4'")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_refused(tmp_path: Path, bad: float) -> None:
    def poison(data: dict[str, Any]) -> None:
        data["state_dict"]["item_emb.weight"][2, 3] = bad

    refused(damaged(tmp_path, poison), "NaN or infinite weights in item_emb.weight", "diverged or damaged")


def test_weights_that_do_not_fit_the_config_are_named(tmp_path: Path) -> None:
    def cut(data: dict[str, Any]) -> None:
        del data["state_dict"]["item_bias"]
        data["state_dict"]["extra.weight"] = torch.zeros(2)
        data["state_dict"]["item_emb.weight"] = data["state_dict"]["item_emb.weight"][:5]

    message = refused(damaged(tmp_path, cut), "state_dict does not fit its config and vocab")
    assert "missing item_bias" in message and "unexpected extra.weight" in message
    assert re.search(r"item_emb\.weight is 5x32, its config and vocab need \d+x32", message), message


def test_a_weight_that_is_not_a_tensor_is_named(tmp_path: Path) -> None:
    refused(damaged(tmp_path, lambda d: set_in(d, "state_dict.item_bias", [0.0] * 12)), "item_bias is a list")


def test_the_stream_engine_refuses_a_damaged_checkpoint_too(tmp_path: Path) -> None:
    # The worker's start and hot reload (`stream.runtime.agents.reload_model`) load through this.
    def poison(data: dict[str, Any]) -> None:
        data["state_dict"]["item_bias"][0] = math.nan

    path = damaged(tmp_path, poison)
    with pytest.raises(CheckpointError, match=r"bad\.pt: damaged checkpoint \(NaN or infinite weights"):
        ModelEngine.from_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"bad\.pt: damaged checkpoint \(missing metadata\)"):
        ModelEngine.from_checkpoint(damaged(tmp_path, lambda d: d.pop("metadata")))


def test_a_pickled_list_says_what_was_expected(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    refused(
        path, "unsupported checkpoint format", "it holds a list", "the dict `behavior-stream train` writes"
    )


def test_a_dict_without_format_version_says_what_was_expected(tmp_path: Path) -> None:
    path = tmp_path / "dict.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    refused(path, "unsupported checkpoint format", "without format_version", "format 1")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"hello, this is a text file\n", "not a torch checkpoint (a text file;"),
        (b"", "not a torch checkpoint (an empty file;"),
        (bytes(range(256)), "not a torch checkpoint (no zip archive;"),
        (pickle.dumps({"format_version": 1}), "not a torch checkpoint (no zip archive;"),
    ],
)
def test_a_file_that_is_not_a_torch_checkpoint(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "foreign.pt"
    path.write_bytes(content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = refused(path, says, "`behavior-stream train` writes a torch zip archive")
    assert "(101)" not in message and "Unsupported operand" not in message
    assert not caught, [str(w.message) for w in caught]  # a warning would be a second stderr line


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_a_truncated_checkpoint_is_said_to_be_incomplete(tmp_path: Path, keep: float) -> None:
    path = valid(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    sidecar_path(path).unlink()  # with it, the checksum would refuse the file first
    message = refused(path, "not a complete torch checkpoint (truncated or damaged:", "central directory")
    assert "If you are seeing this error" not in message and message.endswith(")"), message


def test_a_checkpoint_holding_objects_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "objects.pt"
    torch.save({"format_version": 1, "when": ModelEngine}, path)
    message = refused(path, "holds more than tensors and plain values", "ModelEngine")
    assert "Please file an issue" not in message


def test_a_sidecar_that_is_not_text_is_named(tmp_path: Path) -> None:
    path = valid(tmp_path)
    sidecar_path(path).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ChecksumError) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(f"{sidecar_path(path)}: not a checksum file"), info.value
