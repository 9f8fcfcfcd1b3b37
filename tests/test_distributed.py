"""Gradient averaging by hand: every process ends with the mean of all processes' gradients."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from facegan.training.distributed import average_gradients, broadcast_buffers


def _worker(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
        net.trainer = SimpleNamespace(world_size=2)  # what the helpers read of a LightningModule
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        for i, p in enumerate(net.parameters()):  # rank r's gradient of tensor i: (r + 1) * (i + 1)
            p.grad = torch.full_like(p, float((rank + 1) * (i + 1)))
        net[2].bias.grad = None  # a parameter without a gradient on any process is left alone
        if rank == 1:
            net[0].bias.grad = None  # ... one without a gradient on one process only gets the mean
        net[1].running_mean.fill_(float(rank))
        images = average_gradients(net, opt, images=3 + rank)  # type: ignore[arg-type]
        broadcast_buffers(net)  # type: ignore[arg-type]
        grads = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
        state = {"grads": grads, "running_mean": net[1].running_mean.clone(), "images": images}
        torch.save(state, f"{out}.{rank}")
        dist.barrier()  # no process tears gloo down while the other's last collective is in flight
    finally:
        dist.destroy_process_group()


def test_average_gradients_gives_every_process_the_mean(tmp_path):
    out = str(tmp_path / "grads")
    mp.spawn(_worker, args=(f"file://{tmp_path / 'init'}", out), nprocs=2, join=True)
    for rank in (0, 1):
        result = torch.load(f"{out}.{rank}", weights_only=True)
        weight, bias, *averaged, last = result["grads"]
        assert last is None
        assert torch.equal(weight, torch.full_like(weight, 1.5))  # mean of 1 and 2
        assert torch.equal(bias, torch.full_like(bias, 1.0))  # mean of 2 (rank 0) and nothing (rank 1)
        for i, grad in enumerate(averaged, start=2):  # mean of (1 * (i + 1), 2 * (i + 1))
            assert torch.equal(grad, torch.full_like(grad, 1.5 * (i + 1)))
        assert int(result["images"]) == 7  # the step's images over both processes
        assert torch.equal(result["running_mean"], torch.zeros(4))  # rank 0's buffers everywhere


def test_outside_a_process_group_nothing_is_reduced():
    net = torch.nn.Linear(2, 2)
    net.weight.grad = torch.ones(2, 2)
    average_gradients(
        SimpleNamespace(trainer=SimpleNamespace(world_size=1)), torch.optim.SGD(net.parameters())
    )  # type: ignore[arg-type]
    assert torch.equal(net.weight.grad, torch.ones(2, 2))
