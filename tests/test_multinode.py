"""Two nodes x one process on localhost, launched as users launch several nodes: one
``torchrun --nnodes 2 --node-rank R`` per node (gloo, CPU), each node in a folder of its own as on
machines without a shared disk. The weights end identical, and there is one run folder and one W&B run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.wandb_records import history

TIMEOUT = 300  # a node waiting for a collective the other never joins fails here instead of hanging


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """``python -m facegan fit`` (debug + wandb overlays) on 2 nodes x 1 process; returns the folder."""
    tmp = tmp_path_factory.mktemp("nodes")
    dump = {"class_path": "tests.dump_weights.DumpWeights", "init_args": {"out": str(tmp / "dumps")}}
    (tmp / "nodes.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": [dump]}}))
    fit = ["-m", "facegan", "fit"]  # torchrun runs the module, as `python -m facegan fit` would
    for config in (REPO / "configs/debug.yaml", REPO / "configs/wandb.yaml", tmp / "nodes.yaml"):
        fit += ["--config", str(config)]
    fit += ["--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp"]
    fit += ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
    port, launches = free_port(), []
    for node in (0, 1):
        folder = tmp / f"node{node}"
        folder.mkdir()
        env = {
            # Each node's own W&B service (not this test process's, if it has one): the run file is
            # complete when the node's torchrun returns, whichever tests ran before.
            **{name: value for name, value in os.environ.items() if name != "WANDB_SERVICE"},
            "WANDB_MODE": "offline",
            "FACEGAN_CACHE": str(folder / "cache"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "OMP_NUM_THREADS": "1",  # two processes on two cores
            "PYTHONWARNINGS": "ignore",
        }
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node)]
        torchrun += ["--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port)]
        launches.append(
            subprocess.Popen(
                [*torchrun, *fit],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    deadline, outputs = time.monotonic() + TIMEOUT, []
    try:
        for launch in launches:
            outputs.append(launch.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    finally:
        for launch in launches:
            if launch.poll() is None:
                launch.kill()
                launch.wait()
    for node, (launch, output) in enumerate(zip(launches, outputs, strict=True)):
        assert launch.returncode == 0, f"node {node}:\n{output[-4000:]}"
    return tmp


def load(nodes, rank: int, when: str) -> dict:
    return torch.load(nodes / "dumps" / f"rank{rank}-{when}.pt", weights_only=True)


def test_two_nodes_train_one_model_with_identical_weights(nodes):
    start, end0, end1 = load(nodes, 0, "start"), load(nodes, 0, "end"), load(nodes, 1, "end")
    assert (end0["world_size"], end0["node_rank"]) == (2, 0)
    assert (end1["world_size"], end1["node_rank"]) == (2, 1)  # torchrun's node rank reached Lightning
    for name, value in end0["params"].items():
        assert torch.equal(value, end1["params"][name]), f"{name} differs between the nodes"
    changed = {
        name.split(".")[0] for name, v in end0["params"].items() if not torch.equal(v, start["params"][name])
    }
    assert changed == {"generator", "discriminator", "generator_ema"}  # the CLI default trains an EMA too
    # Both nodes' images counted: 2 epochs x 3 batches x 8 images x 2 nodes.
    assert end0["images_seen"] == end1["images_seen"] == 96


def test_one_run_folder_and_one_wandb_run_on_the_first_node_only(nodes):
    assert not (nodes / "node1" / "lightning_logs").exists()  # the second node writes no run at all
    runs = list((nodes / "node0/lightning_logs/wandb").glob("offline-run-*"))
    folders = list((nodes / "node0/lightning_logs/facegan").iterdir())
    assert len(runs) == 1 and len(folders) == 1
    assert runs[0].name.endswith(folders[0].name)  # the run folder is named by the W&B run id
    assert (folders[0] / "checkpoints/last.ckpt").is_file()
    rows = history(next(runs[0].glob("run-*.wandb")))
    assert max(row["train/kimg"] for row in rows if "train/kimg" in row) == pytest.approx(0.096)
