"""The checks `load_checkpoint` runs on a checkpoint's bytes and dict before building its model.

Each part of the dict `save_checkpoint` writes is checked for presence and shape where it is read,
so a damaged or hand-edited checkpoint is refused at load with the part named (`Malformed`),
instead of failing later wherever that part is first used: in `evaluate`, or in a running worker
at a hot reload.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from behavior_stream.nn.config import LEGACY_OFF, ModelConfig
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.vocab import ItemVocab


def _looks_like_text(raw: bytes) -> bool:
    """Whether the file starts as UTF-8 text (a character cut by the end of the sample is fine)."""
    head = raw[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(raw) == len(head) or exc.start < len(head) - 3:
            return False
    return b"\x00" not in head


def unreadable(path: Path, raw: bytes, exc: Exception) -> str:
    """Why `torch.load` refused the bytes, in a few words (torch buries the reason in a page of advice)."""
    if not raw.startswith(b"PK\x03\x04"):  # torch.save writes a zip archive
        what = "an empty file" if not raw else "a text file" if _looks_like_text(raw) else "no zip archive"
        return f"{path}: not a torch checkpoint ({what}; `behavior-stream train` writes a torch zip archive)"
    text = str(exc)
    reader = re.search(r"PytorchStreamReader failed ([^.\n]+)", text)
    if reader:  # the zip's directory or a member is missing or garbled
        return f"{path}: not a complete torch checkpoint (truncated or damaged: {reader.group(1).strip()})"
    weights = re.search(r"WeightsUnpickler error:\s*([^\n]+?)(?:\.\s|\n|$)", text)
    if weights:  # a whole pickled object, say, rather than tensors and plain values
        return (
            f"{path}: holds more than tensors and plain values, not loaded ({weights.group(1).strip()[:160]})"
        )
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{path}: damaged torch checkpoint ({type(exc).__name__}{': ' + line[:160] if line else ''})"


class Malformed(ValueError):
    """A part of the checkpoint dict that is missing or not of the shape `save_checkpoint` writes."""


def part(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    """`data[key]` when it is of `kind`; `Malformed` naming the part otherwise."""
    name = f"{where}{key}"
    if key not in data:
        raise Malformed(f"missing {name}")
    value = data[key]
    if not isinstance(value, kind):
        raise Malformed(f"{name} is {kind_of(value)}, expected {_expected(kind)}")
    return value


def _a(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def kind_of(value: Any) -> str:
    """`a list`, `an int`, `None`: what a value is, for messages."""
    return "None" if value is None else _a(type(value).__name__)


def _expected(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("None" if k is type(None) else _a(k.__name__) for k in kinds)


_NUMBER = (int, float)
# Metadata that later code reads (`cli.heldout`, `evaluation.report`, `training.calibration`,
# `stream.core.cart`), with the shape it relies on. Each is optional (older and hand-made
# checkpoints lack some) but, when present, of this shape: otherwise the checkpoint is refused
# here, naming the part, instead of failing wherever it is first read.
_METADATA_SHAPES: dict[str, tuple[type, ...]] = {
    "train_config": (dict,),
    "train_config.valid_frac": _NUMBER,
    "train_config.test_frac": _NUMBER,
    "train_config.split_unit": (str,),
    "split": (dict,),
    "dataset": (dict,),
    "dataset.test_path": (str, type(None)),
    "history": (list,),
    "bought_together": (dict,),
    "bought_together.pairs": (dict,),
    "purchase_calibration": (dict, type(None)),
    "purchase_calibration.threshold": _NUMBER,
}
_PLATT_KEYS = ("a", "b", "n", "positives")  # what a Platt calibration needs (`training.calibration`)


def check_metadata(metadata: dict[str, Any]) -> None:
    """`Malformed` for a metadata section that is present but not of the shape its readers expect."""
    for dotted, kind in _METADATA_SHAPES.items():
        *parents, key = dotted.split(".")
        section: Any = metadata
        for parent in parents:
            section = section.get(parent) if isinstance(section, dict) else None
        if isinstance(section, dict) and key in section:
            part(section, key, kind, "metadata." + "".join(f"{p}." for p in parents))
    for i, entry in enumerate(metadata.get("history") or []):
        if not isinstance(entry, dict):
            raise Malformed(f"metadata.history[{i}] is {kind_of(entry)}, expected a dict")
    calibration = metadata.get("purchase_calibration")
    if isinstance(calibration, dict) and calibration.get("method") == "platt":
        for key in _PLATT_KEYS:
            part(calibration, key, _NUMBER, "metadata.purchase_calibration.")
    for item, pairs in ((metadata.get("bought_together") or {}).get("pairs") or {}).items():
        good = isinstance(pairs, list) and all(
            isinstance(p, list | tuple)
            and len(p) == 2
            and isinstance(p[0], str)
            and isinstance(p[1], _NUMBER)
            for p in pairs
        )
        if not good:
            raise Malformed(f"metadata.bought_together.pairs[{item!r}] is not a list of [item, count] pairs")


def checked_vocab(data: dict[str, Any]) -> ItemVocab:
    """The catalog, refusing one that is not a list of distinct item ids (two rows for one id would
    leave one of them unreachable and its scores wrong)."""
    raw = part(data, "vocab", dict)
    items = part(raw, "items", list, "vocab.")
    buckets = part(raw, "n_oov_buckets", int, "vocab.")
    if isinstance(buckets, bool) or buckets < 1:
        raise Malformed(f"vocab.n_oov_buckets must be a positive integer, got {buckets!r}")
    wrong = next((i for i in items if not isinstance(i, str)), None)
    if wrong is not None:
        raise Malformed(f"vocab.items holds {kind_of(wrong)} ({wrong!r}), expected item id strings")
    repeated = [item for item, n in Counter(items).items() if n > 1]
    if repeated:
        raise Malformed(
            f"vocab.items repeats item ids: {len(items):,} entries, {len(set(items)):,} distinct "
            f"(first repeated: {repeated[0]!r})"
        )
    return ItemVocab.from_dict(raw)


def checked_config(data: dict[str, Any]) -> ModelConfig:
    raw = part(data, "config", dict)
    unknown = sorted(set(raw) - {f.name for f in fields(ModelConfig)})
    if unknown:  # ModelConfig's own message lists every known key
        raise Malformed(f"config has unknown keys {unknown} (written by another version?)")
    return ModelConfig.from_dict({**LEGACY_OFF, **raw})


def check_weights(model: SequenceModel, state: dict[str, Any]) -> None:
    """`Malformed` unless `state` has exactly the model's tensors, of its shapes, all finite: a
    model with NaN or infinite weights scores every item NaN, which ranks as all zeros silently."""
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    for name, tensor in state.items():
        if name not in expected:
            continue
        if not isinstance(tensor, torch.Tensor):
            problems.append(f"{name} is {kind_of(tensor)}, not a tensor")
        elif tensor.shape != expected[name].shape:
            have, need = ("x".join(map(str, s)) or "scalar" for s in (tensor.shape, expected[name].shape))
            problems.append(f"{name} is {have}, its config and vocab need {need}")
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise Malformed(f"state_dict does not fit its config and vocab: {'; '.join(problems[:3])}{more}")
    bad = [k for k, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise Malformed(f"NaN or infinite weights in {', '.join(bad[:3])}{more}: a diverged or damaged model")
