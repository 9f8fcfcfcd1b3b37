"""``AtomicCheckpointIO``: Lightning's checkpoint writer, made atomic (a CheckpointIO plugin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from facegan.io.atomic import atomic_write, remove_abandoned


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint through :func:`facegan.io.atomic.atomic_write`: temp file in the target
    folder, fsync, ``os.replace``.

    A crash or kill at any moment leaves either the previous complete file or the new complete file
    under the checkpoint's name, never a truncated one (Lightning's default stages the bytes in the
    system temp folder and then moves them, which is a plain copy when that folder is on another
    file system). The temporary file of a save killed outright (SIGKILL, out of memory) is removed
    by the next save into that folder. Remote paths (``s3://`` ...) keep Lightning's behaviour.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        remove_abandoned(Path(path).parent, "*.ckpt")
        with atomic_write(path) as file:
            torch.save(checkpoint, file)
