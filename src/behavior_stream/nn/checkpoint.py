"""Model checkpoints: one torch file of plain types plus a SHA-256 sidecar, loaded with weights_only=True.

Layout of the saved dict: format_version, state_dict, config (ModelConfig.to_dict), vocab
(ItemVocab.to_dict), item_categories (item -> category, or None), category_names (the model's
category rows in order, `CategoryVocab.names`, or None for a model without item side data as
input), metadata (training history, dataset, seed, ...), version (the model version string,
e.g. "gru-3f2a9c0d1e4b"). A checkpoint written before a ModelConfig field existed loads with
that field's `LEGACY_OFF` value (no category input, no auxiliary heads).

Publishing is atomic for anyone watching the path: at every instant the sidecar lists the digest
of the file at the final name (see `save_checkpoint`), and `load_checkpoint` hashes the very bytes
it deserialises, so a reader never loads a file other than the one it verified.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from behavior_stream.nn.categories import CategoryVocab
from behavior_stream.nn.checkpoint_checks import (
    Malformed,
    check_metadata,
    check_weights,
    checked_config,
    checked_vocab,
    kind_of,
    part,
    unreadable,
)
from behavior_stream.nn.config import ModelConfig
from behavior_stream.nn.network import SequenceModel
from behavior_stream.schema.vocab import ItemVocab

FORMAT_VERSION = 1
_PLAIN = (str, int, float, bool, type(None))


class CheckpointError(ValueError):
    """A file that cannot be loaded as a checkpoint of this format; the message names the file."""


class ChecksumError(CheckpointError):
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


def _sidecar_digests(path: Path) -> set[str] | None:
    """The digests a sidecar lists (one per line; two only while a new version is published)."""
    sidecar = sidecar_path(path)
    try:
        text = sidecar.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:  # a binary file under the sidecar's name
        raise ChecksumError(
            f"{sidecar}: not a checksum file (not text: {exc.reason} at byte {exc.start})"
        ) from None
    return {line.split()[0].lower() for line in text.splitlines() if line.split()}


def _stage(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """A fsynced temporary file beside `path` holding what `write` writes (same directory, so the
    final rename is atomic); removed again if writing fails."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` by `data` in one rename: a reader sees the old file or the whole new one."""
    staged = _stage(path, lambda f: f.write(data))
    try:
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def model_version(model: SequenceModel, vocab: ItemVocab) -> str:
    """`<cell>-<12 hex>`: a content hash of config, catalog and weights (same model, same version)."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update("\x1f".join(vocab.items).encode())
    if model.categories is not None:  # what a category row means changes what the model does
        cats = model.categories
        digest.update("\x1e".join(cats.names).encode())
        digest.update("\x1f".join(f"{i}\x1d{c}" for i, c in sorted(cats.items.items())).encode())
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
    """Publish the checkpoint and its `.sha256` sidecar atomically; returns the model version.

    The order keeps the sidecar listing the digest of whatever file is at `path`, at every
    instant: a watcher that sees a new file finds its digest, and a reader of the old file in
    the middle of a publish still verifies it.

    1. the checkpoint is written and fsynced under a temporary name beside `path`;
    2. the sidecar is replaced by one listing the new digest and the previous one(s);
    3. the temporary file is renamed over `path` (the instant the new version appears);
    4. the sidecar is replaced by one listing only the new digest.

    A crash before 3 leaves the old version, still verifying; from 3 on, the new one.
    """
    if model.n_items != vocab.n_items or model.n_inputs != vocab.n_inputs:
        raise ValueError(
            f"model has {model.n_items} items / {model.n_inputs} inputs, "
            f"vocab {vocab.n_items} / {vocab.n_inputs}: they were not built together"
        )
    if model.categories is not None:
        # The model reads categories through this map, so it is saved whatever the caller passed.
        categories = {**model.categories.items, **(categories or {})}
    version = model_version(model, vocab)
    metadata = {**metadata, "model_version": version}
    _check_plain(metadata, "metadata")
    payload = {
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": model.config.to_dict(),
        "vocab": vocab.to_dict(),
        "item_categories": dict(categories) if categories is not None else None,
        "category_names": list(model.categories.names) if model.categories is not None else None,
        "metadata": metadata,
        "version": version,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = _stage(path, lambda f: torch.save(payload, f))
    try:
        checksum = file_sha256(staged)
        # Only digests the old sidecar already vouched for are carried over: an unverified old
        # file does not become trusted by being replaced.
        previous = ((_sidecar_digests(path) or set()) - {checksum}) if path.exists() else set()
        listed = [checksum, *sorted(previous)]
        _write_atomic(sidecar_path(path), "".join(f"{d}  {path.name}\n" for d in listed).encode())
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    if previous:
        _write_atomic(sidecar_path(path), f"{checksum}  {path.name}\n".encode())
    return version


def _verified_bytes(path: Path, attempts: int = 3) -> tuple[bytes, bool]:
    """The file's bytes and whether a sidecar vouched for them; `ChecksumError` on a mismatch.

    Sidecar, bytes, sidecar: under the publish order of `save_checkpoint`, the bytes read match
    the sidecar read before them (old version) or the one read after them (new version), so a
    publish during the read never looks like corruption. Two whole publishes during one read
    change the sidecar between the reads: then read again.
    """
    for _ in range(attempts):
        before = _sidecar_digests(path)
        data = path.read_bytes()
        after = _sidecar_digests(path)
        if before is None and after is None:
            return data, False
        actual = hashlib.sha256(data).hexdigest()
        if actual in (before or set()) | (after or set()):
            return data, True
        if before == after:
            break
    listed = ", ".join(sorted(after or before or set())) or "empty"
    raise ChecksumError(f"{path}: SHA-256 {actual} does not match {sidecar_path(path)} ({listed})")


def verify_checksum(path: str | Path) -> bool:
    """True when the sidecar matches, False when there is none; `ChecksumError` on a mismatch."""
    return _verified_bytes(Path(path))[1]


def _loaded(data: dict[str, Any]) -> LoadedModel:
    """The model of a checkpoint dict of this format; `Malformed` (or the error of the part that
    refused it) for a structural problem."""
    config = checked_config(data)
    vocab = checked_vocab(data)
    state = part(data, "state_dict", dict)
    metadata = part(data, "metadata", dict)
    check_metadata(metadata)
    version = part(data, "version", str)
    # Optional: None (or absent, in older checkpoints) for a model without item side data.
    item_categories = data.get("item_categories")
    names = data.get("category_names")
    if item_categories is not None:
        part(data, "item_categories", dict)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in item_categories.items()):
            raise Malformed("item_categories is not a map of item id to category name strings")
    if names is not None:
        part(data, "category_names", list)
        if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise Malformed("category_names is not a list of distinct category name strings")
    if config.category_dim > 0 and names is not None:
        categories = CategoryVocab(tuple(names), dict(item_categories or {}))
    else:
        categories = None
    if categories is None and "category_emb.weight" in state:
        raise Malformed("its weights read item categories but it names none (category_names)")
    model = SequenceModel(config, vocab.n_items, vocab.n_inputs, categories, vocab.items)
    check_weights(model, state)
    model.load_state_dict(state)
    model.eval()
    return LoadedModel(model, vocab, config, metadata, version, item_categories)


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load a checkpoint (verifying its sidecar when present) into an eval-mode model.

    `FileNotFoundError` when there is no file; `CheckpointError`, naming the file and the part at
    fault, when it is not a checkpoint of this format, is damaged (a part missing or of the wrong
    type, weights that do not fit the config, NaN or infinite weights, a catalog listing an item
    twice) or does not match its sidecar.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "checkpoint does not exist", str(path))
    raw, _ = _verified_bytes(path)
    try:
        with warnings.catch_warnings():
            # A plain pickle (no checkpoint at all) makes torch warn about its protocol first.
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for foreign files
        raise CheckpointError(unreadable(path, raw, exc)) from exc
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: unsupported checkpoint format: it holds {kind_of(data)}, expected the dict "
            "`behavior-stream train` writes"
        )
    if "format_version" not in data:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format: a dict without format_version, expected the dict "
            f"`behavior-stream train` writes (format {FORMAT_VERSION})"
        )
    if data["format_version"] != FORMAT_VERSION:
        found = data["format_version"]
        raise CheckpointError(f"{path}: unsupported checkpoint format {found!r}, expected {FORMAT_VERSION}")
    try:
        return _loaded(data)
    except Malformed as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({exc})") from exc
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})") from exc
