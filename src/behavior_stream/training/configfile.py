"""The settings file of `train --config FILE`, which `tune` writes: model and training settings as JSON.

    {"model": {<ModelConfig fields>}, "train": {<TrainConfig fields>}, "tuned": {<free-form>}}

Every section and field is optional; a key that is not a section or a field of its dataclass is
an error naming it, so a typo never silently trains with a default. "tuned" records where the
settings came from (the study, the trial, its value) and is not read back. No torch here: the CLI
reads the file before it imports the model code.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from behavior_stream.nn.config import ModelConfig
from behavior_stream.training.config import TrainConfig

SECTIONS = ("model", "train", "tuned")
# Machine settings, not model choices: a file made on one machine should not pin them on another.
NOT_WRITTEN = frozenset({"threads", "progress"})


@dataclass(frozen=True)
class SettingsFile:
    """The fields a settings file gives, per dataclass (only those present in the file)."""

    model: dict[str, Any]
    train: dict[str, Any]


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def _check_type(path: Path, key: str, value: Any, default: Any) -> None:
    """JSON types against the field's default: a string epoch count would fail deep in torch."""
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"{path}: {key} must be {type(default).__name__}, got {value!r}")


def read_settings(path: Path) -> SettingsFile:
    """Parse and check a settings file; every problem is a ValueError that names the file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object with sections {', '.join(SECTIONS)}")
    unknown = [key for key in document if key not in SECTIONS]
    sections: dict[str, dict[str, Any]] = {}
    for name, cls in (("model", ModelConfig), ("train", TrainConfig)):
        section = document.get(name, {})
        if not isinstance(section, dict):
            raise ValueError(f"{path}: section {name!r} must be a JSON object")
        defaults = _defaults(cls)
        unknown += [f"{name}.{key}" for key in section if key not in defaults]
        for key, value in section.items():
            if key in defaults:
                _check_type(path, f"{name}.{key}", value, defaults[key])
        sections[name] = {key: value for key, value in section.items() if key in defaults}
    if unknown:
        raise ValueError(f"{path}: unknown keys {', '.join(unknown)} (sections: {', '.join(SECTIONS)})")
    return SettingsFile(sections["model"], sections["train"])


def settings_document(model: ModelConfig, train: TrainConfig, tuned: dict[str, Any]) -> dict[str, Any]:
    """The JSON document for `model` and `train` (all fields but the machine ones) and `tuned`."""
    train_fields = {key: value for key, value in asdict(train).items() if key not in NOT_WRITTEN}
    return {"model": model.to_dict(), "train": train_fields, "tuned": tuned}


def write_settings(path: Path, model: ModelConfig, train: TrainConfig, tuned: dict[str, Any]) -> None:
    """Write the settings file (`read_settings` reads it back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(settings_document(model, train, tuned), indent=2)
    path.write_text(text + "\n", encoding="utf-8")
