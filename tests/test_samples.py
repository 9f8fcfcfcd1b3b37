"""``SampleGridMonitor``'s grids as a person sees them: the pixels W&B and TensorBoard recorded are
exactly the pixels of the local PNG, and the PNG is the generator's images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from facegan.callbacks import SampleGridMonitor
from facegan.images import grid_image
from tests.test_module import tiny_data, tiny_gan, tiny_trainer
from tests.wandb_records import history

wandb = pytest.importorskip("wandb")


def pixels(source) -> np.ndarray:
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB"))


def test_the_png_wandb_and_tensorboard_hold_the_same_non_black_pixels(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    tensorboard = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    torch.manual_seed(0)
    gan = tiny_gan()
    wandb_logger = WandbLogger(project="grids", save_dir=str(tmp_path), offline=True)
    tb_logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb")
    grids = SampleGridMonitor(num_images=4, nrow=2)
    trainer = tiny_trainer(logger=[wandb_logger, tb_logger], log_every_n_steps=1, callbacks=[grids])
    trainer.fit(gan, tiny_data())
    run_id = wandb_logger.version
    wandb.finish()

    local = pixels(grids.last_path)
    assert local.shape == (2 * 34 + 2, 2 * 34 + 2, 3)  # 2 x 2 images of 32 px, 2 px padding
    # The PNG is the module's own samples, rounded to bytes (not black, not truncated).
    gan.eval()
    expected = np.asarray(grid_image(gan.sample(z=gan.sample_z[:4]), nrow=2))
    np.testing.assert_array_equal(local, expected)
    assert local.max() > 100 and local.std() > 10

    # W&B: the image file the offline run recorded for the logged row.
    run = next((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    rows = [row for row in history(run / f"run-{run_id}.wandb") if row.get("samples/_type")]
    assert len(rows) == 1
    np.testing.assert_array_equal(pixels(run / "files" / rows[0]["samples/filenames"][0]), local)

    # TensorBoard: the encoded image in the event file.
    events = tensorboard.EventAccumulator(tb_logger.log_dir, size_guidance={"images": 0}).Reload()
    (logged,) = events.Images("samples")
    np.testing.assert_array_equal(pixels(io.BytesIO(logged.encoded_image_string)), local)
