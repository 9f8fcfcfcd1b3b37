"""The README keeps its promises: its first lines are the three commands CI runs, it opens with a grid of
faces, every link resolves, and its quick-start commands and code run as written (tiny sizes)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

README = (REPO / "README.md").read_text()
COMMANDS = [
    'python -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"',
    "python -m facegan fit",
    "pytest",
]


def block_after(marker: str, text: str = README) -> str:
    """The fenced code block right after ``<!-- marker -->``."""
    tag = f"<!-- {marker} -->"
    assert tag in text, f"the README lost its {marker!r} block"
    found = re.search(r"```\w*\n(.*?)```", text[text.index(tag) :], re.S)
    assert found is not None
    return found.group(1)


def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "WANDB_MODE": "offline",
        "FACEGAN_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }


def photos(folder: Path, count: int = 24) -> Path:
    """``count`` small JPEGs of smooth colour fields in nested folders, as a user's photo folder."""
    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / f"album{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, (1, 1, 3))
        ramp = np.linspace(0, 60, 40)[:, None, None]
        Image.fromarray(np.clip(base + ramp + rng.normal(0, 8, (40, 52, 3)), 0, 255).astype(np.uint8)).save(
            sub / f"{i}.jpg"
        )
    return folder


def test_the_readme_opens_with_the_three_commands_that_ci_runs_and_a_grid_of_faces():
    lines = README.splitlines()
    assert len(lines) <= 250, f"the README has {len(lines)} lines; reference goes to docs/"
    first = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first is not None and README.index(first.group(0)) < 400, "the commands come first"
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == COMMANDS
    ci = (REPO / ".ci" / "run").read_text()  # CI installs as the README says, then runs its test command
    assert 'pip install -e ".[dev]"' in ci and ci.rstrip().splitlines()[-1] == "pytest"
    image = re.search(r"!\[[^\]]+\]\((docs/[^)]+\.png)\)", "\n".join(lines[:20]))
    assert image is not None, "the README opens with a grid of faces"
    path = REPO / image.group(1)
    assert path.stat().st_size < 400_000
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    assert min(pixels.shape[:2]) >= 128 and pixels.std() > 20  # a picture, not a blank or a flat colour
    assert "../shared" not in README and "shared/data" not in README  # no development-setup paths


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in (REPO / "docs").glob("*.md"))])
def test_every_relative_link_resolves(page):
    path = REPO / page if page == "README.md" else REPO / "docs" / page
    text = path.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        assert (path.parent / target).exists(), f"{page} links to {target}, which does not exist"
    if page != "README.md":
        assert "../shared" not in text, f"{page} names a path of the development setup"


def test_the_own_photos_command_trains_on_a_folder_of_photos(tmp_path):
    command = shlex.split(block_after("command: own-photos").strip())
    assert command[:3] == ["python", "-m", "facegan"] and "--data.root" in command
    command[command.index("--data.root") + 1] = str(photos(tmp_path / "my-photos"))
    command = [sys.executable if part == "python" else part for part in command]
    command = [str(REPO / part) if part.startswith("configs/") else part for part in command]
    tiny = [
        "--config",
        str(REPO / "configs" / "debug.yaml"),
        "--data.image_size",
        "32",
        "--data.batch_size",
        "8",
    ]
    result = subprocess.run(command + tiny, cwd=tmp_path, env=env(tmp_path), capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    grids = sorted((run / "samples").glob("*.png"))
    assert grids, "no sample grid written"
    grid = np.asarray(Image.open(grids[-1]).convert("RGB"))
    assert grid.std() > 1.0  # generated images, not a blank canvas


def test_the_quick_start_code_trains_and_samples(tmp_path):
    code = block_after("example: quick-start")
    for old, new in [
        ('root="/data/faces"', f"root={str(photos(tmp_path / 'faces'))!r}"),
        ("image_size=64", "image_size=32"),
        ("batch_size=64", "batch_size=8"),
        ("max_epochs=25", "max_epochs=1, limit_train_batches=2, limit_val_batches=1"),
        ("(16, 3, 64, 64)", "(16, 3, 32, 32)"),
    ]:
        assert old in code, f"the quick-start code no longer holds {old!r}"
        code = code.replace(old, new)
    code += "\nassert images.shape == (16, 3, 32, 32) and images.min() >= -1 and images.max() <= 1\n"
    code += "assert model.images_seen == 16, model.images_seen\n"
    (tmp_path / "quick_start.py").write_text(code)
    result = subprocess.run([sys.executable, "quick_start.py"], cwd=tmp_path, env=env(tmp_path),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "lightning_logs" / "version_0" / "samples").glob("*.png"))
