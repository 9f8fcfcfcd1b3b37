"""``FaceDataModule``: faces for training, from a folder, a zip, the CelebA layout or built in."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import zipfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from facegan.data.cache import CachedFaces, build_cache, collate_uint8, default_cache_dir
from facegan.data.procedural import ProceduralFaces
from facegan.data.sources import (
    CELEBA_IMAGES,
    CELEBA_PARTITION,
    FaceImageDataset,
    FolderSource,
    ZipSource,
    collate_images,
    read_partition,
)
from facegan.images import from_uint8

log = logging.getLogger(__name__)

SOURCES = ("auto", "procedural", "folder", "celeba", "zip")
SPLITS = ("train", "val", "test")


class _Flipped(Dataset):
    """Random horizontal flips over a dataset of ``(3, S, S)`` tensors."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.dataset[index]
        return image.flip(-1) if torch.rand(()) < 0.5 else image

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        """Batched path (the DataLoader calls it when present): render together, flip each."""
        getitems = getattr(self.dataset, "__getitems__", None)
        images = getitems(indices) if getitems else [self.dataset[i] for i in indices]
        flips = (torch.rand(len(images)) < 0.5).tolist()
        return [image.flip(-1) if flip else image for image, flip in zip(images, flips, strict=True)]


class _FromUint8(Dataset):
    """float ``[-1, 1]`` view of a uint8 dataset (FID's real images from the cache)."""

    def __init__(self, dataset: CachedFaces) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return from_uint8(self.dataset[index])

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        return list(from_uint8(self.dataset.__getitems__(indices)).unbind(0))


def _leave_job_sigterm_to_the_trainer(worker_id: int, trainer_pid: int) -> None:
    """A loader worker obeys SIGTERM from its trainer process and ignores it from anyone else.

    ``timeout``, Slurm and systemd deliver SIGTERM to every process of the job. A worker killed by it
    makes the trainer raise "DataLoader worker ... killed by signal" at an arbitrary point, before
    Lightning's SIGTERM handling can save a checkpoint at the next batch boundary; so such a SIGTERM
    is left to the trainer, which stops, saves and then shuts its workers down. The trainer's own
    ``terminate()`` (DataLoader shutdown, ``multiprocessing`` at interpreter exit) still ends the worker
    at once: ignoring SIGTERM outright would make that exit wait forever. A worker whose trainer died
    ends by itself (the DataLoader watchdog).

    SIGTERM is blocked and taken by a daemon thread with ``sigwaitinfo``, which names the sender
    (``trainer_pid`` is passed in rather than taken from ``getppid``: under ``forkserver`` the
    worker is forked by the fork server, not by the trainer).
    Where that call does not exist (macOS, Windows) the worker keeps the default: it dies of any SIGTERM.
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


class DeviceBatches:
    """Shuffled uint8 training batches drawn from a copy of the whole cache on ``device``.

    Epoch ``e`` is one permutation drawn from ``seed + e`` (as ``DistributedSampler`` does; ``epoch``
    returns the trainer's current epoch), so every process draws the same one even though each has
    its own random streams, a resume replays the epoch it stopped in, and process ``rank`` of
    ``world_size`` takes every ``world_size``-th index: together the processes see each image once
    per epoch. The last partial batch is dropped.
    """

    def __init__(self, dataset: CachedFaces, batch_size: int, device: torch.device, world_size: int = 1,
                 rank: int = 0, seed: int = 0, epoch: Callable[[], int] = lambda: 0) -> None:  # fmt: skip
        self.images = dataset.__getitems__(list(range(len(dataset)))).to(device)  # (N, 3, S, S) uint8
        self.batch_size, self.world_size, self.rank = batch_size, world_size, rank
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return (self.images.shape[0] // self.world_size) // self.batch_size

    def __iter__(self) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch())
        order = torch.randperm(self.images.shape[0], generator=generator).to(self.images.device)
        mine = order[self.rank :: self.world_size]
        for i in range(len(self)):
            yield self.images[mine[i * self.batch_size : (i + 1) * self.batch_size]]


class FaceDataModule(L.LightningDataModule):
    """Face images as ``(B, 3, S, S)`` float batches in ``[-1, 1]``.

    Args:
        root: where the images are. ``None`` -> the built-in procedural faces (no download). A
            folder of images (searched recursively), a ``.zip`` of images, or a CelebA folder
            holding ``img_align_celeba/`` or ``img_align_celeba.zip`` (read without extraction)
            and optionally ``list_eval_partition.txt`` (train/val/test).
        source: ``"auto"`` detects the kind from ``root``; or force ``"procedural"``,
            ``"folder"``, ``"celeba"``, ``"zip"``.
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
        num_workers: loader worker processes; ``None`` -> one per spare core, at most 8, for
            decoding (also when building the cache), and none for reading the cache.
        pin_memory: ``None`` -> pinned only when training on a CUDA GPU.
        persistent_workers: keep workers alive between epochs (when ``num_workers > 0``).
        cache: decode, crop and resize the training images once into a ``uint8`` file that later
            epochs and runs memory-map (:mod:`facegan.data.cache`); training batches then arrive
            as uint8 and are scaled to ``[-1, 1]`` and flipped on the device (in
            ``on_after_batch_transfer``). Files and folders only (built-in faces are computed).
        cache_dir: folder of the cache; ``None`` -> ``$FACEGAN_CACHE/data``, else
            ``~/.cache/facegan/data``.
        device_resident: with ``cache``, hold the whole cached training set on the training device
            (uint8: 12 KB per 64 px image, 2.5 GB for all of CelebA at 64 px) and draw shuffled
            batches there: no loader workers, no host-to-device copies.
    """

    def __init__(
        self,
        root: str | None = None,
        source: Literal["auto", "procedural", "folder", "celeba", "zip"] = "auto",
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
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        cache: bool = False,
        cache_dir: str | None = None,
        device_resident: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if source not in SOURCES:
            raise ValueError(f"FaceDataModule: `source` must be one of {SOURCES}, but got {source!r}")
        if image_size < 8:
            raise ValueError(f"FaceDataModule: `image_size` must be >= 8, but got {image_size}")
        if batch_size < 1:
            raise ValueError(f"FaceDataModule: `batch_size` must be >= 1, but got {batch_size}")
        if crop_size is not None and crop_size < 1:
            raise ValueError(
                f"FaceDataModule: `crop_size` must be a positive integer or null, got {crop_size}"
            )
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"FaceDataModule: `{name}` must be in [0, 1), but got {value}")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                "FaceDataModule: `val_fraction` + `test_fraction` must leave images for training"
            )
        if device_resident and not cache:
            raise ValueError("FaceDataModule: `device_resident` needs `cache` (set --data.cache true)")
        self.root = root
        self.source = source
        self.image_size = image_size
        self.batch_size = batch_size
        self.datasets: dict[str, Dataset] = {}
        self.image_datasets: dict[str, FaceImageDataset] = {}  # the decoding datasets (fingerprints)
        self.cache_path: Path | None = None  # the training cache's rows file, when `cache`
        self._cache_skipped = 0
        self.kind: str | None = None  # resolved source kind, after setup()

    # ------------------------------------------------------------------------------------ setup
    def _resolve(self) -> tuple[str, FolderSource | ZipSource | None, Path | None]:
        """Return ``(kind, image source, partition file or None)`` for ``root``/``source``."""
        if self.root is None:
            if self.source not in ("auto", "procedural"):
                raise ValueError(f"FaceDataModule: source={self.source!r} needs `root` (a path)")
            return "procedural", None, None
        if self.source == "procedural":
            raise ValueError("FaceDataModule: source='procedural' takes no `root`; unset one of them")
        root = Path(self.root).expanduser()
        expected = (
            "expected a folder of images (jpg, png, webp, bmp), a .zip of images, or a CelebA folder "
            f"holding {CELEBA_IMAGES}/ or {CELEBA_IMAGES}.zip (and optionally {CELEBA_PARTITION})"
        )
        if not root.exists():
            raise FileNotFoundError(
                f"FaceDataModule: `root` {str(root)!r} does not exist; {expected}. Leave `root` unset "
                "to train on the built-in procedural faces."
            )
        if root.is_dir():
            partition = root / CELEBA_PARTITION
            if (root / CELEBA_IMAGES).is_dir():
                celeba: FolderSource | ZipSource = FolderSource(root / CELEBA_IMAGES)
            elif (root / f"{CELEBA_IMAGES}.zip").is_file():
                celeba = self._zip(root / f"{CELEBA_IMAGES}.zip", celeba_prefix=True)
            elif root.name == CELEBA_IMAGES and (root.parent / CELEBA_PARTITION).is_file():
                celeba, partition = FolderSource(root), root.parent / CELEBA_PARTITION
            elif self.source == "celeba":
                raise FileNotFoundError(f"FaceDataModule: source='celeba' but {str(root)!r}: {expected}")
            else:
                if self.source == "zip":
                    raise ValueError(f"FaceDataModule: source='zip' but `root` {str(root)!r} is a folder")
                return "folder", FolderSource(root), None
            if self.source not in ("auto", "celeba"):
                raise ValueError(
                    f"FaceDataModule: `root` {str(root)!r} has the CelebA layout; use source='celeba' or 'auto'"
                )
            return "celeba", celeba, partition if partition.is_file() else None
        if not zipfile.is_zipfile(root):
            raise ValueError(
                f"FaceDataModule: `root` {str(root)!r} is a file but not a zip archive; {expected}"
            )
        if self.source == "folder":
            raise ValueError(f"FaceDataModule: source='folder' but `root` {str(root)!r} is a zip file")
        partition = root.parent / CELEBA_PARTITION
        if root.name == f"{CELEBA_IMAGES}.zip" and self.source != "zip":
            return "celeba", self._zip(root, celeba_prefix=True), partition if partition.is_file() else None
        return "zip", self._zip(root), None

    @staticmethod
    def _zip(path: Path, celeba_prefix: bool = False) -> ZipSource:
        try:
            source = ZipSource(path)
        except zipfile.BadZipFile as error:
            raise ValueError(f"FaceDataModule: cannot open zip archive {str(path)!r}: {error}") from error
        prefix = f"{CELEBA_IMAGES}/"
        if celeba_prefix and any(name.startswith(prefix) for name in source.names):
            source.names = [name for name in source.names if name.startswith(prefix)]
        return source

    def _split(self, source: FolderSource | ZipSource, partition: Path | None) -> dict[str, list[int]]:
        if partition is not None:
            splits = read_partition(partition)
            indices: dict[str, list[int]] = {split: [] for split in SPLITS}
            unlisted = 0
            for i, name in enumerate(source.names):
                split = splits.get(name.rsplit("/", 1)[-1])
                if split is None:
                    unlisted += 1
                else:
                    indices[split].append(i)
            if unlisted:
                log.warning("%d images are not listed in %s and are not used", unlisted, partition)
            return indices
        order = torch.randperm(len(source), generator=torch.Generator().manual_seed(self.hparams.split_seed))
        n_val = int(round(len(source) * self.hparams.val_fraction))
        n_test = int(round(len(source) * self.hparams.test_fraction))
        return {
            "val": sorted(order[:n_val].tolist()),
            "test": sorted(order[n_val : n_val + n_test].tolist()),
            "train": sorted(order[n_val + n_test :].tolist()),
        }

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        kind, source, partition = self._resolve()
        self.kind = kind
        if source is None:
            if hp.cache:
                raise ValueError(
                    "FaceDataModule: `cache` applies to image files; the built-in procedural faces are "
                    "rendered, not decoded. Set --data.root, or leave cache false"
                )
            n_held_out = max(self.batch_size, int(round(hp.num_procedural * hp.val_fraction)))
            train: Dataset = ProceduralFaces(hp.num_procedural, self.image_size, hp.procedural_seed)
            self.datasets = {
                "train": _Flipped(train) if hp.flip else train,
                "val": ProceduralFaces(n_held_out, self.image_size, hp.procedural_seed + 1),
                "test": ProceduralFaces(n_held_out, self.image_size, hp.procedural_seed + 2),
            }
        else:
            if len(source) == 0:
                raise FileNotFoundError(
                    f"FaceDataModule: no images found in {self.root!r} (kind {kind!r}); expected files ending "
                    "in .jpg, .jpeg, .png, .webp or .bmp"
                )
            for split, indices in self._split(source, partition).items():
                self.datasets[split] = self.image_datasets[split] = FaceImageDataset(
                    source,
                    indices,
                    self.image_size,
                    crop_size=hp.crop_size,
                    flip=hp.flip and split == "train" and not hp.cache,  # cached: flipped on the device
                    skip_bad_images=hp.skip_bad_images,
                )
            if hp.cache:
                self.datasets["train"] = self._cached("train")
        n_train = len(self.datasets["train"])  # type: ignore[arg-type]
        if n_train < self.batch_size:
            raise ValueError(
                f"FaceDataModule: `batch_size` ({self.batch_size}) is larger than the training set "
                f"({n_train} images from {self.root or 'procedural faces'}); lower --data.batch_size"
            )
        sizes = {split: len(ds) for split, ds in self.datasets.items()}  # type: ignore[arg-type]
        log.info("FaceDataModule: %s source %s, images per split %s", kind, self.root or "(built in)", sizes)

    def _cached(self, split: str) -> CachedFaces:
        folder = Path(self.hparams.cache_dir).expanduser() if self.hparams.cache_dir else default_cache_dir()
        rows_path, meta = build_cache(
            self.image_datasets[split], folder, self.fingerprint(split), num_workers=self._workers()
        )
        self.cache_path, self._cache_skipped = rows_path, len(meta["skipped"])
        return CachedFaces(rows_path, meta["count"], self.image_size)

    def _workers(self) -> int:
        workers = self.hparams.num_workers
        return min(8, max(1, (os.cpu_count() or 2) - 1)) if workers is None else workers

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Cached (uint8) batches: scale to ``[-1, 1]`` and, in training, flip, on the batch's device."""
        if not (isinstance(batch, torch.Tensor) and batch.dtype == torch.uint8):
            return batch
        trainer = getattr(self, "trainer", None)
        if self.hparams.flip and trainer is not None and trainer.training:
            # Flip the chosen images while they are uint8 (a quarter of the bytes), in place.
            chosen = (torch.rand(batch.shape[0], device=batch.device) < 0.5).nonzero().squeeze(1)
            batch[chosen] = batch[chosen].flip(-1)
        return from_uint8(batch)

    # ------------------------------------------------------------------------------ dataloaders
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            self.setup()
        dataset = self.datasets[split]
        if len(dataset) == 0:  # type: ignore[arg-type]
            where = f"{CELEBA_PARTITION}" if self.kind == "celeba" else f"{split}_fraction"
            raise ValueError(f"FaceDataModule: the {split!r} split of {self.root!r} is empty (see {where})")
        workers = self._workers()
        if isinstance(dataset, CachedFaces) and self.hparams.num_workers is None:
            # Mapped rows are gathered faster than a worker process can hand a batch over (measured:
            # 75,000 images/s in process vs 18,000 through one worker at 64 px on 2 cores).
            workers = 0
        pin = self.hparams.pin_memory
        if pin is None:
            accelerator = getattr(getattr(self, "trainer", None), "accelerator", None)
            pin = type(accelerator).__name__ == "CUDAAccelerator"
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,  # constant training batch size (BatchNorm); evaluation sees every image
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=self.hparams.persistent_workers and workers > 0,
            collate_fn=collate_uint8 if isinstance(dataset, CachedFaces) else collate_images,
            worker_init_fn=partial(_leave_job_sigterm_to_the_trainer, trainer_pid=os.getpid())
            if workers
            else None,
        )

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        if self.hparams.device_resident:
            if not self.datasets:
                self.setup()
            trainer = getattr(self, "trainer", None)
            device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
            world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # seed_everything's, as DistributedSampler
            epoch = (lambda: trainer.current_epoch) if trainer is not None else (lambda: 0)
            return DeviceBatches(self.datasets["train"], self.batch_size, device, world, rank, seed, epoch)
        return self._loader("train", shuffle=True)

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
        if not self.datasets:
            self.setup()
        dataset = self.datasets[split]
        if isinstance(dataset, CachedFaces):
            return _FromUint8(dataset)
        if isinstance(dataset, _Flipped):
            return dataset.dataset
        if isinstance(dataset, FaceImageDataset) and dataset.flip:
            return FaceImageDataset(
                dataset.source,
                dataset.indices,
                dataset.image_size,
                dataset.crop_size,
                False,
                dataset.skip_bad_images,
            )
        return dataset

    def fingerprint(self, split: str = "train") -> dict[str, Any]:
        """What identifies the images of ``split``: a cache key for statistics computed from them.

        Covers the source (kind, resolved path, every file name with its size and modification time,
        or the procedural seed and count), the split and the preprocessing.
        """
        if not self.datasets:
            self.setup()
        dataset = self.image_datasets[split] if split in self.image_datasets else self.real_dataset(split)
        key: dict[str, Any] = {"kind": self.kind, "split": split, "image_size": self.image_size}
        if isinstance(dataset, ProceduralFaces):
            key.update(procedural_seed=dataset.seed, num_images=len(dataset), generator_version=1)
            return key
        assert isinstance(dataset, FaceImageDataset)
        source = dataset.source
        digest = hashlib.sha256()
        if isinstance(source, ZipSource):
            stat = source.path.stat()
            digest.update(os.fsencode(f"{source.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"))
            digest.update("\n".join(source.names[i] for i in dataset.indices).encode())
        else:
            for i in dataset.indices:
                path = source.root / source.names[i]
                stat = path.stat()
                # fsencode: file names that are not UTF-8 arrive surrogate-escaped; hash their bytes
                digest.update(os.fsencode(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n"))
        key.update(
            files=digest.hexdigest(), num_images=len(dataset.indices), crop_size=self.hparams.crop_size
        )
        return key

    @property
    def skipped_images(self) -> int:
        """Images skipped as unreadable so far (all workers), with ``skip_bad_images=True``."""
        decoded = sum(ds.skipped.value for ds in self.datasets.values() if isinstance(ds, FaceImageDataset))
        return decoded + self._cache_skipped

    def teardown(self, stage: str) -> None:
        if self.skipped_images:
            log.warning("FaceDataModule: %d unreadable images were skipped", self.skipped_images)
