"""Model checkpoints: one torch file of plain types plus a SHA-256 sidecar, loaded with weights_only=True.

Layout of the saved dict: format_version, state_dict, config (ModelConfig.to_dict), vocab
(ItemVocab.to_dict), item_categories (item -> category, or None), metadata (training history,
dataset, seed, ...), version (the model version string, e.g. "gru-3f2a9c0d1e4b").
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.vocab import ItemVocab

FORMAT_VERSION = 1
_PLAIN = (str, int, float, bool, type(None))


class ChecksumError(ValueError):
    """The checkpoint's bytes do not match its `.sha256` sidecar."""


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference (eval mode) with everything needed to encode events for it."""

    model: SequenceModel
    vocab: ItemVocab
    config: ModelConfig
    metadata: dict[str, Any]
    model_version: str
    item_categories: dict[str, str] | None = None


def sidecar_path(path: str | Path) -> Path:
    """`<path>.sha256`."""
    return Path(f"{path}.sha256")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_version(model: SequenceModel, vocab: ItemVocab) -> str:
    """`<cell>-<12 hex>`: a content hash of config, catalog and weights (same model, same version)."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update("\x1f".join(vocab.items).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{model.config.cell}-{digest.hexdigest()[:12]}"


def _check_plain(value: Any, where: str) -> None:
    """Reject values `torch.load(weights_only=True)` would refuse, naming where they are."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string")
            _check_plain(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif type(value) not in _PLAIN:
        # Exact types: subclasses (numpy floats, StrEnum, TorchVersion) pickle as their own class,
        # which weights_only loading refuses.
        raise TypeError(f"{where}: {type(value).__name__} is not a plain JSON-like value")


def save_checkpoint(
    path: str | Path,
    model: SequenceModel,
    vocab: ItemVocab,
    metadata: dict[str, Any],
    categories: dict[str, str] | None = None,
) -> str:
    """Write the checkpoint and its `.sha256` sidecar atomically; returns the model version."""
    if model.n_items != vocab.n_items or model.n_inputs != vocab.n_inputs:
        raise ValueError(
            f"model has {model.n_items} items / {model.n_inputs} inputs, "
            f"vocab {vocab.n_items} / {vocab.n_inputs}: they were not built together"
        )
    version = model_version(model, vocab)
    metadata = {**metadata, "model_version": version}
    _check_plain(metadata, "metadata")
    payload = {
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": model.config.to_dict(),
        "vocab": vocab.to_dict(),
        "item_categories": dict(categories) if categories is not None else None,
        "metadata": metadata,
        "version": version,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    checksum = file_sha256(tmp)
    os.replace(tmp, path)
    # Sidecar last: a crash in between leaves a mismatch that load reports, never a silent one.
    sidecar_path(path).write_text(f"{checksum}  {path.name}\n")
    return version


def verify_checksum(path: str | Path) -> bool:
    """True when the sidecar matches, False when there is none; `ChecksumError` on a mismatch."""
    sidecar = sidecar_path(path)
    if not sidecar.exists():
        return False
    fields = sidecar.read_text().split()
    expected = fields[0] if fields else ""
    actual = file_sha256(path)
    if expected.lower() != actual:
        raise ChecksumError(f"{path}: SHA-256 {actual} does not match {sidecar} ({expected or 'empty'})")
    return True


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load a checkpoint (verifying its sidecar when present) into an eval-mode model."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    verify_checksum(path)
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        found = data.get("format_version") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: unsupported checkpoint format {found!r}, expected {FORMAT_VERSION}")
    config = ModelConfig.from_dict(data["config"])
    vocab = ItemVocab.from_dict(data["vocab"])
    model = SequenceModel(config, vocab.n_items, vocab.n_inputs)
    model.load_state_dict(data["state_dict"])
    model.eval()
    return LoadedModel(
        model=model,
        vocab=vocab,
        config=config,
        metadata=data["metadata"],
        model_version=data["version"],
        item_categories=data["item_categories"],
    )
