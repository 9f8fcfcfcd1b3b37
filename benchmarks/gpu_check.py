"""One command for a machine with a GPU: training speed of every recipe, FID features, data, harness.

    python benchmarks/gpu_check.py --json gpu_check.json       # on CUDA when available: <= 10 minutes
    python benchmarks/gpu_check.py --tiny --device cpu          # tiny sizes on a CPU: seconds

Prints and writes (``--json``):

- training images/s of each recipe in configs/ (dcgan 64, resnet 64 and 128, r3gan 64, keras 128:
  their networks, losses, batch size and options) under ``bf16-mixed`` and ``32-true``: a real
  ``Trainer`` running ``FaceGAN.training_step`` on batches already on the device, timed from the end of
  the warm-up batches to the end of the last one (the device synchronized at both ends);
- FID feature throughput: generated-size uint8 images/s through torchmetrics' FID Inception network
  with the TensorFlow weights (``--weights``, or where facegan finds them; without a file, a randomly
  initialised torchvision Inception-v3 of the same shape stands in and the JSON says so);
- the data path's images/s as a fit sees batches (on the device, scaled to ``[-1, 1]``, flipped):
  the default (the training set held on the device) and the loader workers' (``device_resident false``);
- the harness against a plain loop (dcgan 64, bf16 where the device has it): images/s of FaceGAN under
  a ``Trainer`` and of a minimal PyTorch loop doing the same step, alternating, and their ratio.

``--tiny`` shrinks everything (32 px where a family allows it, 8-channel networks, batches of 4 (keras:
2 at its one size, 128 px), one step each) so the whole check runs on a CPU in seconds; tests/test_gpu_check.py runs it that way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from facegan import FaceDataModule, FaceGAN
from facegan.metrics.fid import resolve_weights
from facegan.training.objective import get_losses

REPO = Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = REPO.parent / "shared" / "fid" / "weights-inception-2015-12-05-6726825d.pth"
RECIPES = {  # name: config file
    "dcgan64": "celeba64.yaml",
    "resnet64": "celeba64_resnet.yaml",
    "resnet128": "celeba128_resnet.yaml",
    "r3gan64": "r3gan64.yaml",
    "keras128": "keras128.yaml",
}
PRECISIONS = {"bf16": "bf16-mixed", "fp32": "32-true"}


def recipe(name: str, tiny: bool) -> tuple[dict[str, Any], int]:
    """``(FaceGAN arguments, batch size)`` of a recipe's config; tiny: 32 px, 8 channels, batch 4."""
    config = yaml.safe_load((REPO / "configs" / RECIPES[name]).read_text())
    model = {**config["model"], "image_size": config["data"]["image_size"]}
    model.pop("channels_last", None)  # set per device below
    batch = config["data"]["batch_size"]
    if tiny:
        batch = 2 if model["arch"] == "keras" else 4
        if model["arch"] != "keras":
            model.update(image_size=32, g_channels=8, d_channels=8)
        if model["arch"] == "r3gan":
            model["blocks_per_stage"] = 1
    return model, batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock(L.Callback):
    """Times the batches after the first ``warmup``: the device synchronized at the start and the end."""

    def __init__(self, device: torch.device, warmup: int) -> None:
        self.device, self.warmup = device, warmup
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            sync(self.device)
            self.start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx + 1 == trainer.num_training_batches:
            sync(self.device)
            self.end = time.perf_counter()


class Batches:
    """``n`` float batches in ``[-1, 1]`` already on ``device`` (the training set held there, as by default)."""

    def __init__(self, n: int, batch: int, size: int, device: torch.device) -> None:
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(n * batch, 3, size, size, generator=generator).mul_(2).sub_(1).to(device)
        self.batches = list(images.split(batch))

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def train_rate(model_args: dict[str, Any], batch: int, precision: str, device: torch.device,
               warmup: int, batches: int) -> float:  # fmt: skip
    """Training images/s of ``FaceGAN(**model_args)`` under a Trainer (no logger, checkpoints or bar)."""
    torch.manual_seed(0)
    model = FaceGAN(**model_args, channels_last=device.type == "cuda")
    clock = Clock(device, warmup)
    trainer = L.Trainer(
        accelerator=device.type, devices=1, precision=precision, max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[clock], limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, Batches(warmup + batches, batch, model_args["image_size"], device))
    return batch * batches / (clock.end - clock.start)


def plain_rate(model_args: dict[str, Any], batch: int, bf16: bool, device: torch.device,
               warmup: int, batches: int) -> float:  # fmt: skip
    """The same networks, losses and Adam settings in a minimal loop (D frozen for G's step)."""
    torch.manual_seed(0)
    model = FaceGAN(**model_args).to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    g, d, hp = model.generator, model.discriminator, model.hparams
    d_loss_fn, g_loss_fn = get_losses(hp.loss)
    fused = {"fused": True} if device.type == "cuda" else {}
    opt_g = torch.optim.Adam(g.parameters(), lr=hp.g_lr, betas=hp.g_betas, eps=hp.adam_eps, **fused)
    opt_d = torch.optim.Adam(d.parameters(), lr=hp.d_lr, betas=hp.d_betas, eps=hp.adam_eps, **fused)
    data = Batches(warmup + batches, batch, model_args["image_size"], device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    for i, real in enumerate(data):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        if device.type == "cuda":
            real = real.contiguous(memory_format=torch.channels_last)
        with autocast:
            fake = g(torch.randn(batch, hp.latent_dim, device=device))
            d_loss = d_loss_fn(d(real).float(), d(fake.detach()).float(), 0.0)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        d.requires_grad_(False)
        with autocast:
            g_loss = g_loss_fn(d(fake).float())
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        d.requires_grad_(True)
    sync(device)
    return batch * batches / (time.perf_counter() - start)


def fid_rate(device: torch.device, weights: str | None, images: int, batch: int) -> tuple[float, str]:
    """uint8 64 px images/s through FID's Inception network (resized to 299 inside), and which network."""
    if weights is not None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        metric = FrechetInceptionDistance(feature=2048, normalize=False, antialias=False,
                                          feature_extractor_weights_path=weights).to(device)  # fmt: skip
        extract, name = (lambda x: metric.update(x, real=False)), "inception-tf-weights"
    else:
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=False, init_weights=False).eval().to(device)
        resize = lambda x: torch.nn.functional.interpolate(x.float() / 255, size=(299, 299), mode="bilinear")  # noqa: E731
        extract, name = (lambda x: net(resize(x))), "random-inception-v3-stand-in"
    data = torch.randint(0, 256, (batch, 3, 64, 64), dtype=torch.uint8, device=device)
    with torch.no_grad():
        extract(data)  # warm-up
        sync(device)
        start = time.perf_counter()
        for _ in range(max(1, images // batch)):
            extract(data)
        sync(device)
    return max(1, images // batch) * batch / (time.perf_counter() - start), name


def data_rates(device: torch.device, root: str | None, tiny: bool, batches: int) -> dict[str, float]:
    """Batches as a fit receives them (on the device, scaled, flipped): images/s held vs loader."""
    size, batch = (32, 16) if tiny else (64, 128)
    common = {"root": root, "image_size": size, "batch_size": batch, "num_procedural": 256 if tiny else 8192}
    trainer = L.Trainer(accelerator=device.type, devices=1, logger=False, enable_progress_bar=False)
    rates: dict[str, float] = {}
    for name, resident in (("resident", None), ("loader", False)):
        data = FaceDataModule(**common, device_resident=resident)
        data.trainer = trainer
        trainer.training = True  # flips, as in training
        start = time.perf_counter()
        loader = data.train_dataloader()
        if name == "resident":
            rates["resident_build_seconds"] = time.perf_counter() - start
        count, start = 0, time.perf_counter()
        for i, images in enumerate(loader):
            if i == batches:
                break
            images = data.on_after_batch_transfer(images.to(device, non_blocking=True), 0)
            count += images.shape[0]
        sync(device)
        rates[name] = count / (time.perf_counter() - start)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny networks and few steps (CPU smoke run)")
    parser.add_argument("--root", default=None, help="images for the data rates; default: built-in faces")
    parser.add_argument(
        "--weights", default=None, help="FID Inception weights; default: where facegan finds them"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    began = time.perf_counter()
    device = torch.device(args.device)
    warmup, batches, repeats = (0, 1, 1) if args.tiny else (5, 30, 3)
    bf16_ok = device.type == "cpu" or torch.cuda.is_bf16_supported()
    results: dict[str, Any] = {"device": str(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
                               "tiny": args.tiny, "torch": torch.__version__, "train": {}}  # fmt: skip
    for name in RECIPES:
        model_args, batch = recipe(name, args.tiny)
        results["train"][name] = {}
        for short, precision in PRECISIONS.items():
            if short == "bf16" and not bf16_ok:
                continue
            rate = train_rate(model_args, batch, precision, device, warmup, batches)
            results["train"][name][short] = rate
            print(f"train {name:9s} {short}: {rate:9.1f} images/s (batch {batch})", flush=True)

    weights = None if args.tiny else (args.weights or resolve_weights() or
                                      (str(SHARED_WEIGHTS) if SHARED_WEIGHTS.is_file() else None))  # fmt: skip
    rate, extractor = fid_rate(device, weights, 2 if args.tiny else 1024, 2 if args.tiny else 128)
    results["fid_features_per_sec"], results["fid_extractor"] = rate, extractor
    print(f"FID features ({extractor}): {rate:.1f} images/s", flush=True)

    results["data"] = data_rates(device, args.root, args.tiny, 4 if args.tiny else 100)
    print(f"data, held on the device: {results['data']['resident']:.0f} images/s (built in "
          f"{results['data']['resident_build_seconds']:.1f} s); loader workers: {results['data']['loader']:.0f} "
          "images/s", flush=True)  # fmt: skip

    model_args, batch = recipe("dcgan64", args.tiny)
    bf16 = bf16_ok
    fit, plain = [], []
    for _ in range(repeats):  # alternating, so drifts in machine speed hit both alike
        plain.append(plain_rate(model_args, batch, bf16, device, warmup, batches))
        fit.append(
            train_rate(model_args, batch, "bf16-mixed" if bf16 else "32-true", device, warmup, batches)
        )
    ratio = statistics.median(f / p for f, p in zip(fit, plain, strict=True))
    results["harness_vs_plain"] = {
        "fit": statistics.median(fit),
        "plain": statistics.median(plain),
        "ratio": ratio,
    }
    print(f"harness vs plain (dcgan64, {'bf16' if bf16 else 'fp32'}): {statistics.median(fit):.1f} vs "
          f"{statistics.median(plain):.1f} images/s, ratio {ratio:.3f}", flush=True)  # fmt: skip
    results["seconds"] = time.perf_counter() - began
    print(f"done in {results['seconds']:.0f} s on {results['device']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
