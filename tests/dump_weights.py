"""A callback for the multi-process tests: every process saves its own view of the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from facegan.callbacks import FIDMonitor


class DumpWeights(L.Callback):
    """Save ``rank<r>-{start,end}.pt``: parameters, ``images_seen`` and the FID history of process r."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def _dump(self, trainer: L.Trainer, pl_module: L.LightningModule, when: str) -> None:
        fid = [cb for cb in trainer.callbacks if isinstance(cb, FIDMonitor)]
        state: dict[str, Any] = {
            "params": {name: p.detach().cpu().clone() for name, p in pl_module.named_parameters()},
            "images_seen": int(pl_module.images_seen),
            "fid": [dict(entry) for entry in fid[0].history] if fid else [],
            "world_size": trainer.world_size,
            "node_rank": trainer.node_rank,
        }
        self.out.mkdir(parents=True, exist_ok=True)
        torch.save(state, self.out / f"rank{trainer.global_rank}-{when}.pt")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._dump(trainer, pl_module, "start")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._dump(trainer, pl_module, "end")
