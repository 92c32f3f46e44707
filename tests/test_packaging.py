"""Packaging: the wheel installs one namespaced package, the command works from anywhere, and every
path the README names exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "behavior_stream"


def _build_wheel(tmp_path: Path) -> Path:
    """Build a wheel from a copy of the sources (so the checkout gets no build/ directory)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path / "dist"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(out),
        ".",
    ]
    subprocess.run(cmd, cwd=tree, check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("behavior_stream-*.whl")
    return wheel


def test_wheel_installs_only_behavior_stream(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert tops - dist_info == {"behavior_stream"}, sorted(tops)
    modules = [n for n in names if n.endswith(".py")]
    # Every source module is in the wheel, and no benchmark or test module is.
    assert len(modules) == len(list(PACKAGE.rglob("*.py"))) > 50
    assert "behavior_stream/py.typed" in names
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "behavior-stream = behavior_stream.cli.main:main" in text


def test_package_and_command_work_outside_the_checkout(tmp_path: Path) -> None:
    code = "import behavior_stream, behavior_stream.cli.main as m; print(behavior_stream.__file__, m.app)"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "behavior_stream" in done.stdout
    command = Path(sys.executable).parent / "behavior-stream"
    done = subprocess.run([str(command), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in ("train", "evaluate", "worker", "replay", "demo", "bench"):
        assert name in done.stdout


# Backticked tokens that look like repository paths: `a/b/`, `a/b.py`, or a bare `name.py`.
_PATH = re.compile(r"`([\w.-]+(?:/[\w.-]*)+|[\w-]+\.(?:py|yml|yaml|toml))`")
# Not repository paths: outputs the commands write, and the shared data beside the repo.
_NOT_REPO = ("runs/", "../", "models/", "data/")


def test_every_path_the_readme_names_exists() -> None:
    text = (ROOT / "README.md").read_text()
    found = {p.removeprefix("./") for p in _PATH.findall(text)}
    paths = sorted(p for p in found if not p.startswith(_NOT_REPO))
    assert len(paths) >= 10, paths  # the README does name the layout
    missing = []
    for path in paths:
        # Paths are relative to the repository or, inside the package, to src/behavior_stream/.
        if (ROOT / path).exists() or (PACKAGE / path).exists():
            continue
        # A bare file name (`app.py`) may stand for a module or test anywhere in the tree.
        if "/" not in path and any(list((ROOT / d).rglob(path)) for d in ("src", "benchmarks", "tests")):
            continue
        missing.append(path)
    assert not missing, f"README names paths that do not exist: {missing}"
