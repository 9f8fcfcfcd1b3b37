"""The package keeps its shape: private library internals in their one documented place, documented
folders, and plain PyTorch layers that import without Lightning."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO

SRC = REPO / "src" / "facegan"

# private name -> the one file allowed to use it (each says why there, and has a test of its own)
PRIVATE_USES = {
    r"torch\._utils": None,
    r"\._BatchNorm\b": None,
    r"_batches_that_stepped": "io/runs.py",
    r"_wandb_init": None,
    r"logger\._id\b": None,
    r"logger\._version\b": None,
    r"logger\._experiment\b": None,
    r"\._trainer\b": None,
    r"CUDAAccelerator": None,
    r"_parse_ckpt_path": None,
    r"\._save_(topk|last)_checkpoint\b|\._monitor_candidates\b": "callbacks/kimg.py",
    r"_is_(avx512_bf16|amx_tile)_supported": "training/hardware.py",
}


def sources():
    return sorted(SRC.rglob("*.py"))


def test_private_library_attributes_are_used_in_their_documented_place_only():
    found: dict[str, set[str]] = {}
    for path in sources():
        text = path.read_text()
        for pattern in PRIVATE_USES:
            if re.search(pattern, text):
                found.setdefault(pattern, set()).add(path.relative_to(SRC).as_posix())
    allowed = {pattern: {place} for pattern, place in PRIVATE_USES.items() if place is not None}
    assert {pattern: places for pattern, places in found.items()} == allowed


def test_every_folder_is_a_documented_package():
    for folder in {p.parent for p in sources()}:
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder} has no __init__.py"
        assert init.read_text().lstrip().startswith('"""'), f"{init} should say what the folder holds"


def test_plain_pytorch_layers_import_without_lightning():
    """nets/, metrics/, data decoding and exports need neither Lightning nor W&B."""
    code = (
        "import sys\n"
        "for name in ('lightning', 'pytorch_lightning', 'wandb'): sys.modules[name] = None\n"
        "import facegan.nets, facegan.metrics, facegan.data.decode, facegan.data.procedural, facegan.io.export\n"
        "import facegan.training.objective\n"
        "import facegan.training.distributed\n"
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
