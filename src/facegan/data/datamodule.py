"""``FaceDataModule``: faces for training, from a folder, a zip, the CelebA layout or built in."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import lightning as L
import torch
from lightning.pytorch.utilities.parsing import AttributeDict
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from facegan.data.cache import (
    CachedFaces,
    DeviceBatches,
    Uint8Rows,
    build_cache,
    decode_all,
    render_all,
    unflipped,
)
from facegan.data.decode import FaceImageDataset, collate_images, fingerprint
from facegan.data.procedural import ProceduralFaces
from facegan.data.shards import is_prepared, is_remote, require_litdata
from facegan.data.sources import (
    CELEBA_PARTITION,
    SOURCES,
    SPLITS,
    resolve_source,
    split_indices,
)
from facegan.images import from_uint8
from facegan.io.paths import cache_dir

if TYPE_CHECKING:
    from facegan.data.streaming import Shards

log = logging.getLogger(__name__)


class FaceDataModule(L.LightningDataModule):
    """Face images as ``(B, 3, S, S)`` float batches in ``[-1, 1]``.

    Args:
        root: where the images are. ``None`` -> the built-in procedural faces (no download). A
            folder of images (searched recursively), a ``.zip`` of images, or a CelebA folder
            holding ``img_align_celeba/`` or ``img_align_celeba.zip`` (read without extraction)
            and optionally ``list_eval_partition.txt`` (train/val/test). Or shards written by
            ``python -m facegan prepare``: their folder, or a URL LitData streams (``s3://...``).
        source: ``"auto"`` detects the kind from ``root``; or force one of the others.
        image_size: side of the square training images in pixels.
        batch_size: images per batch (the last incomplete training batch is dropped).
        crop_size: side of the central square cropped before resizing; ``None`` crops to the
            shorter side (178 px on aligned CelebA: the usual convention, 89 px on half-size copies).
        flip: random horizontal flips of training images.
        val_fraction: share of images held out for validation when there is no partition file.
        test_fraction: share held out for testing when there is no partition file.
        split_seed: seed of that random split.
        num_procedural: number of procedural training faces (an epoch).
        procedural_seed: seed of the procedural faces (val/test use seed + 1 / + 2).
        skip_bad_images: skip unreadable images with a warning and a count instead of failing.
        max_skipped_fraction: with ``skip_bad_images``, fail once more than this share of a split's
            files were skipped; 1 skips any number (an epoch without any image still fails).
        num_workers: loader worker processes; ``None`` -> one per spare core, at most 8, for
            decoding (also when building the cache), and none for reading the cache or shards.
        pin_memory: ``None`` -> pinned only when training on a CUDA GPU.
        persistent_workers: keep workers alive between epochs. Off: fresh workers each epoch draw
            their random streams from the trainer's, which a checkpoint holds (bit-exact resumes).
        cache: decode, crop and resize the training images once into a ``uint8`` file that later
            epochs and runs memory-map; its batches are scaled and flipped on the device. Image
            files only (built-in faces are computed).
        cache_dir: folder of the cache; ``None`` -> ``$FACEGAN_CACHE/data``, else
            ``~/.cache/facegan/data``.
        device_resident: hold the whole training set, decoded once, on the training device as uint8
            (12 KB per 64 px image) and draw shuffled batches there: no loader workers, no decoding
            after the first pass, no host-to-device copies. ``None`` -> whenever it fits
            ``resident_budget_gb``, unless ``skip_bad_images`` (the loader then skips and counts
            unreadable files each epoch). Shards always stream.
        resident_budget_gb: the largest decoded training set (``N * 3 * S * S`` bytes, in GB) that
            ``device_resident=None`` holds on the device: 4 GB takes CelebA's 162,770 training faces
            at 64 px (2.0 GB), not at 128 px (8.0 GB).
    """

    hparams: AttributeDict  # Lightning types it as a mapping; the settings of __init__, by attribute

    def __init__(
        self,
        root: str | None = None,
        source: Literal["auto", "procedural", "folder", "celeba", "zip", "shards"] = "auto",
        image_size: int = 64,
        batch_size: int = 64,
        crop_size: int | None = None,
        flip: bool = True,
        val_fraction: float = 0.02,
        test_fraction: float = 0.02,
        split_seed: int = 0,
        num_procedural: int = 8192,
        procedural_seed: int = 0,
        skip_bad_images: bool = False,
        max_skipped_fraction: float = 0.1,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        cache: bool = False,
        cache_dir: str | None = None,
        device_resident: bool | None = None,
        resident_budget_gb: float = 4.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        _check_settings(self.hparams)
        self.root = root
        self.source = source
        self.image_size = image_size
        self.batch_size = batch_size
        self.datasets: dict[str, Dataset] = {}
        self.image_datasets: dict[str, FaceImageDataset] = {}  # the decoding datasets (fingerprints)
        self.cache_path: Path | None = None  # the training cache's rows file, when `cache`
        self._cache_skipped = 0
        self.kind: str | None = None  # resolved source kind, after setup()
        self.shards: Shards | None = None  # prepared shards, when `root` is a prepared folder or a URL
        self._resident: torch.Tensor | None = None  # the decoded training set, when device-resident

    def prepare_data(self) -> None:
        """Build the training cache (``cache=True``) once per node: Lightning calls this on each node's
        local rank 0 while the others wait; they then map the finished file in :meth:`setup`."""
        if self.hparams.cache:
            self.setup()

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # set up already (the loaders and FID call this too)
            return
        hp = self.hparams
        shards = self.source == "shards" or (self.source == "auto" and is_prepared(self.root))
        kind, source, partition = ("shards", None, None) if shards else resolve_source(self.root, self.source)
        self.kind = kind
        if shards:
            if hp.cache:
                raise ValueError(f"FaceDataModule: {self.root!r} holds shards (decoded); set cache false")
            if hp.device_resident:
                raise ValueError(
                    f"FaceDataModule: {self.root!r} holds shards, which stream; set device_resident false or null"
                )
            where = str(cache_dir("shards", hp.cache_dir)) if is_remote(str(self.root)) else None
            require_litdata()  # at setup, not at the first batch; the error names the extra
            from facegan.data.streaming import Shards

            self.shards = Shards(str(self.root), self.image_size, hp.crop_size, where)
            self.datasets = {split: self.shards.rows(split) for split in SPLITS}
        elif source is None:
            if hp.cache:
                raise ValueError(
                    "FaceDataModule: `cache` applies to image files; the built-in procedural faces are "
                    "rendered, not decoded. Set --data.root, or leave cache false"
                )
            n_held_out = max(self.batch_size, int(round(hp.num_procedural * hp.val_fraction)))
            self.datasets = {
                "train": ProceduralFaces(hp.num_procedural, self.image_size, hp.procedural_seed, hp.flip),
                "val": ProceduralFaces(n_held_out, self.image_size, hp.procedural_seed + 1),
                "test": ProceduralFaces(n_held_out, self.image_size, hp.procedural_seed + 2),
            }
        else:
            if len(source) == 0:
                raise FileNotFoundError(
                    f"FaceDataModule: no images found in {self.root!r} (kind {kind!r}); expected files ending "
                    "in .jpg, .jpeg, .png, .webp or .bmp"
                )
            splits = split_indices(source.names, partition, hp.val_fraction, hp.test_fraction, hp.split_seed)
            for split, indices in splits.items():
                self.datasets[split] = self.image_datasets[split] = FaceImageDataset(
                    source,
                    indices,
                    self.image_size,
                    crop_size=hp.crop_size,
                    flip=hp.flip and split == "train" and not hp.cache,  # cached: flipped on the device
                    skip_bad_images=hp.skip_bad_images,
                    max_skipped_fraction=hp.max_skipped_fraction,
                )
            if hp.cache:
                folder, key = cache_dir("data", hp.cache_dir), self.fingerprint("train")
                self.cache_path, meta = build_cache(
                    self.image_datasets["train"], folder, key, self._workers()
                )
                self._cache_skipped = len(meta["skipped"])
                self.datasets["train"] = CachedFaces(self.cache_path, meta["count"], self.image_size)
        self._check_batch_size(len(self.datasets["train"]), f"images from {self.root or 'procedural faces'}")  # type: ignore[arg-type]
        sizes = {split: len(ds) for split, ds in self.datasets.items()}  # type: ignore[arg-type]
        log.info("FaceDataModule: %s source %s, images per split %s", kind, self.root or "(built in)", sizes)

    def _check_batch_size(self, count: int, what: str) -> None:
        if count < self.batch_size:
            raise ValueError(
                f"FaceDataModule: `batch_size` ({self.batch_size}) is larger than the training set "
                f"({count} {what}); lower --data.batch_size"
            )

    def _workers(self) -> int:
        workers = self.hparams.num_workers
        return min(8, max(1, (os.cpu_count() or 2) - 1)) if workers is None else workers

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Cached (uint8) batches: scale to ``[-1, 1]`` and, in training, flip, on the batch's device."""
        if not (isinstance(batch, torch.Tensor) and batch.dtype == torch.uint8):
            return batch
        trainer = self.trainer
        if self.hparams.flip and trainer is not None and trainer.training:
            # Flip the chosen images while they are uint8 (a quarter of the bytes), in place.
            chosen = (torch.rand(batch.shape[0], device=batch.device) < 0.5).nonzero().squeeze(1)
            batch[chosen] = batch[chosen].flip(-1)
        return from_uint8(batch)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        dataset = self.datasets[split]
        if len(dataset) == 0:  # type: ignore[arg-type]
            where = f"{CELEBA_PARTITION}" if self.kind == "celeba" else f"{split}_fraction"
            raise ValueError(f"FaceDataModule: the {split!r} split of {self.root!r} is empty (see {where})")
        # Mapped rows are gathered faster than a worker process can hand a batch over (measured:
        # 75,000 images/s in process vs 18,000 through one worker at 64 px on 2 cores), and fewer than
        # 1,024 images (the built-in faces' 164 for validation) are decoded before a worker has started.
        in_process = isinstance(dataset, Uint8Rows) or len(dataset) < 1024  # type: ignore[arg-type]
        workers = 0 if in_process and self.hparams.num_workers is None else self._workers()
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,  # constant training batch size (BatchNorm); evaluation sees every image
            collate_fn=collate_images,
            **self._loader_settings(workers),
        )

    def _loader_settings(self, workers: int) -> dict[str, Any]:
        """Worker processes, pinning (``None``: when training on CUDA) and SIGTERM for both loaders."""
        trainer, pin = self.trainer, self.hparams.pin_memory
        if pin is None:
            pin = trainer is not None and trainer.strategy.root_device.type == "cuda"
        init = partial(leave_job_sigterm_to_the_trainer, trainer_pid=os.getpid()) if workers else None
        persistent = self.hparams.persistent_workers and workers > 0
        return dict(num_workers=workers, pin_memory=pin, persistent_workers=persistent, worker_init_fn=init)

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        self.setup()
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # seed_everything's: the same on every rank
        if self.shards is not None:  # a StreamingDataLoader: Lightning checkpoints its state_dict()
            workers = self.hparams.num_workers or 0  # in process: 48,000 vs 18,000 images/s with 1 worker
            return self.shards.train_loader(self.batch_size, seed, **self._loader_settings(workers))
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if not self._held_resident(device):
            return self._loader("train", shuffle=True)
        if self._resident is None:
            self._resident = self._decoded_training_set()
            # fewer than counted: images skipped as unreadable
            self._check_batch_size(self._resident.shape[0], f"readable images in {self.root}")
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        epoch = (lambda: trainer.current_epoch) if trainer is not None else (lambda: 0)
        batches = DeviceBatches(self._resident, self.batch_size, device, world, rank, seed, epoch)
        self._resident = batches.images  # the device's copy only (the host's is freed)
        return batches

    def _held_resident(self, device: torch.device) -> bool:
        """Whether the training set is held on ``device`` (``device_resident``, or else whether it fits
        ``resident_budget_gb``), said in one log line."""
        hp = self.hparams
        train = self.datasets["train"]
        count, nbytes = len(train), len(train) * 3 * self.image_size**2  # type: ignore[arg-type]
        what = f"{count} training images ({nbytes / 1e9:.2f} GB at {self.image_size} px)"
        rendered = self.kind == "procedural"
        skipping = hp.skip_bad_images and not rendered  # see `device_resident` above
        fits = nbytes <= hp.resident_budget_gb * 1e9 and not skipping
        resident = fits if hp.device_resident is None else hp.device_resident
        budget = f"resident_budget_gb={hp.resident_budget_gb:g}"
        if resident:
            origin = "read from the cache" if hp.cache else "rendered" if rendered else "decoded"
            why = "device_resident true" if hp.device_resident else f"within {budget}"
            message = f"{origin} once and held on {device}, where batches are drawn ({why})"
        elif isinstance(train, CachedFaces):
            message = f"read from the cache file {self.cache_path} each epoch"
        else:
            why = (
                "device_resident false" if hp.device_resident is False
                else "skip_bad_images true" if skipping else f"more than {budget}"
            )  # fmt: skip
            by = f"{workers} loader workers" if (workers := self._workers()) else "the training process"
            message = f"{'rendered' if rendered else 'decoded'} every epoch by {by} ({why}"
            message += ")" if rendered else "; --data.cache true decodes them once into a file)"
        rank_zero_info(f"FaceDataModule: the {what} are {message}")
        return resident

    def _decoded_training_set(self) -> torch.Tensor:
        """The whole training set, unflipped, as ``(N, 3, S, S)`` uint8: read from the cache, decoded
        once (loader workers, a progress bar) or, for the built-in faces, rendered once."""
        train = self.datasets["train"]
        if isinstance(train, CachedFaces):
            return train.__getitems__(list(range(len(train))))
        # Nothing else runs yet: every core decodes, a process per 1,024 images (fewer are done sooner
        # in this one), unless num_workers says how many.
        workers = self.hparams.num_workers
        if workers is None:
            workers = min(8, os.cpu_count() or 1, len(train) // 1024)  # type: ignore[arg-type]
        if "train" in self.image_datasets:
            return decode_all(self.image_datasets["train"], workers)
        return render_all(cast(ProceduralFaces, unflipped(train)), workers)

    def val_dataloader(self) -> DataLoader | list:
        if len(self.datasets.get("val", [])) == 0 and self.datasets:  # type: ignore[arg-type]
            log.warning("FaceDataModule: no validation images in %s; validation is skipped", self.root)
            return []
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def real_dataset(self, split: str = "train") -> Dataset:
        """The images of ``split`` exactly as preprocessed for training but never flipped (for FID)."""
        if split not in SPLITS:
            raise ValueError(f"FaceDataModule: `split` must be one of {SPLITS}, but got {split!r}")
        self.setup()
        return unflipped(self.datasets[split])

    def fingerprint(self, split: str = "train") -> dict[str, Any]:
        """What identifies the images of ``split`` (:func:`~facegan.data.decode.fingerprint`): a cache
        key for statistics computed from them."""
        self.setup()
        if self.shards is not None:
            return self.shards.fingerprint(split)
        if split in self.image_datasets:
            dataset: FaceImageDataset | ProceduralFaces = self.image_datasets[split]
        else:
            dataset = cast(ProceduralFaces, self.real_dataset(split))
        return fingerprint(dataset, self.kind, split, self.image_size, self.hparams.crop_size)

    @property
    def skipped_images(self) -> int:
        """Distinct image files skipped as unreadable so far (all workers, all epochs; a file skipped
        in every epoch counts once), with ``skip_bad_images=True``."""
        decoded = sum(ds.skipped for ds in self.datasets.values() if isinstance(ds, FaceImageDataset))
        return decoded + self._cache_skipped

    def teardown(self, stage: str) -> None:
        if self.skipped_images:
            log.warning("FaceDataModule: %d unreadable images were skipped", self.skipped_images)


_LIMITS: dict[str, tuple[Callable[[Any], bool], str]] = {  # setting -> (its values' test, the rule)
    "source": (lambda value: value in SOURCES, f"one of {SOURCES}"),
    "image_size": (lambda value: value >= 8, ">= 8"),
    "batch_size": (lambda value: value >= 1, ">= 1"),
    "crop_size": (lambda value: value is None or value >= 1, "a positive integer or null"),
    "val_fraction": (lambda value: 0.0 <= value < 1.0, "in [0, 1)"),
    "test_fraction": (lambda value: 0.0 <= value < 1.0, "in [0, 1)"),
    "max_skipped_fraction": (lambda value: 0.0 <= value <= 1.0, "in [0, 1]"),
    "resident_budget_gb": (lambda value: value >= 0, ">= 0"),  # not NaN
}


def _check_settings(hp: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for settings no data could satisfy (``hp``: the data module's hparams)."""
    root = hp["root"]
    if root is not None and not str(root).strip():
        raise ValueError(
            "FaceDataModule: `root` is empty; give the folder or zip of images, or leave it unset "
            "(null) to train on the built-in procedural faces"
        )
    for name, (allowed, what) in _LIMITS.items():
        if not allowed(hp[name]):
            raise ValueError(f"FaceDataModule: `{name}` must be {what}, but got {hp[name]!r}")
    if hp["val_fraction"] + hp["test_fraction"] >= 1.0:
        raise ValueError("FaceDataModule: `val_fraction` + `test_fraction` must leave images for training")
    if hp["source"] == "shards" and root is None:
        raise ValueError("FaceDataModule: source='shards' needs `root`: a prepared folder or URL")


def leave_job_sigterm_to_the_trainer(worker_id: int, trainer_pid: int) -> None:
    """A loader worker obeys SIGTERM from its trainer process and ignores it from anyone else.

    ``timeout``, Slurm and systemd signal every process of the job; a killed worker would fail the
    trainer before Lightning's SIGTERM handling saves a checkpoint. The trainer's own ``terminate()``
    still ends the worker (ignoring SIGTERM outright would hang that). A daemon thread's ``sigwaitinfo``
    names the sender (``trainer_pid`` is passed: under ``forkserver`` ``getppid`` is the fork server).
    Without it (macOS, Windows) any SIGTERM ends the worker.
    """
    if not hasattr(signal, "sigwaitinfo"):
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not a handler inherited from the trainer's fork
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # inherited by the thread below

    def wait_for_sigterm() -> None:
        while signal.sigwaitinfo({signal.SIGTERM}).si_pid != trainer_pid:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.kill(os.getpid(), signal.SIGTERM)  # default action: the worker ends "killed by SIGTERM"

    threading.Thread(target=wait_for_sigterm, name="facegan-sigterm", daemon=True).start()
