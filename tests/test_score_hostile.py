"""`score` on hostile input: damaged or foreign statistics files are refused on load, before any
image is read (NaN crashed the process in LAPACK, a matrix that is no covariance printed a negative
"FID"); unreadable image files name the file and an option `score` has; FID's eigenvalue step runs on
one CPU thread. A 12-feature stand-in for Inception (tests/test_fid_sources.py) keeps these fast."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from facegan.cli.tools import main
from facegan.metrics import fid as fid_engine
from facegan.metrics.fid import FID, from_loader, read_stats_file, real_statistics
from tests.test_fid_sources import EXTRACTOR, Pooled
from tests.test_score import pngs

D = Pooled.num_features  # 12


class Untouchable(Pooled):
    """The stand-in extractor, for runs that must stop before any image's features are computed."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pytest.fail("features were computed before the statistics file was checked")


def use_metric(monkeypatch: pytest.MonkeyPatch, extractor: torch.nn.Module) -> None:
    metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False, normalize=False)
    monkeypatch.setattr(fid_engine, "build_fid_metric", lambda *args, **kwargs: (metric, EXTRACTOR))


def run_score(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``(exit code, last line of stderr)`` of ``score`` with these arguments."""
    with pytest.raises(SystemExit) as exit_info:
        main(["score", *args, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    return int(exit_info.value.code), err[-1] if err else ""


def covariance(seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(50, D))
    return np.cov(x, rowvar=False)


def indefinite() -> np.ndarray:
    sigma = covariance()
    sigma[0, 0] = -5.0  # an eigenvalue far below 0
    return sigma


def with_nan() -> np.ndarray:
    sigma = covariance()
    sigma[3, 4] = sigma[4, 3] = np.nan
    return sigma


def asymmetric() -> np.ndarray:
    sigma = covariance()
    sigma[0, 1] += 0.5
    return sigma


MU = np.zeros(D)
INF_MU = np.array([np.inf, *np.zeros(D - 1)])


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"mu": MU, "sigma": with_nan()}, "`sigma` holds 2 NaN or infinite values; the file is damaged"),
        ({"mu": INF_MU, "sigma": covariance()}, "`mu` holds 1 NaN or infinite values; the file is damaged"),
        ({"mu": MU, "sigma": indefinite()}, "`sigma` is not positive semi-definite (eigenvalues from -"),
        ({"mu": MU, "sigma": asymmetric()}, "`sigma` is not symmetric (|sigma - sigma^T| up to 0.5"),
        ({"mu": MU, "sigma": covariance()[:, :-1]}, f"`mu` ({D},) and `sigma` ({D}, {D - 1}) do not match"),
        ({"mu": MU, "sigma": covariance(), "num_images": 1}, "statistics of 1 images; FID needs at least 2"),
        ({"mu": MU, "sigma": covariance(), "num_images": 2.5}, "`num_images` must be a whole number"),
        ({"mu": MU.astype(str), "sigma": covariance()}, "`mu` must hold real numbers, but its dtype is <U"),
        (
            {"mu": np.zeros(10), "sigma": np.eye(10)},  # a foreign network's (or layer's) features
            f"statistics of 10 features, but the feature extractor gives {D}; compute them with the same",
        ),
    ],
    ids=[
        "nan-sigma",
        "inf-mu",
        "indefinite",
        "asymmetric",
        "shapes",
        "one-image",
        "half-image",
        "text",
        "dim",
    ],
)
def test_damaged_statistics_are_refused_before_any_image_is_read(
    arrays, message, tmp_path, capsys, monkeypatch
):
    use_metric(monkeypatch, Untouchable())
    fake = pngs(tmp_path / "fake", 4, 8, 100, seed=0)
    stats = tmp_path / "real.npz"
    np.savez(stats, **arrays)
    code, line = run_score([str(fake), str(stats), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 2
    assert line.startswith(f"facegan score: error: {stats}: ") and message in line, line


def test_a_file_that_is_no_npz_is_refused_with_one_line(tmp_path, capsys, monkeypatch):
    use_metric(monkeypatch, Untouchable())
    fake = pngs(tmp_path / "fake", 4, 8, 100, seed=0)
    stats = tmp_path / "real.npz"
    stats.write_bytes(b"not a zip file")
    code, line = run_score([str(fake), str(stats)], capsys)
    assert code == 2 and line.startswith(f"facegan score: error: {stats}: not a statistics .npz"), line


def test_sound_statistics_still_score(tmp_path, capsys, monkeypatch):
    """Float32 storage and fewer images than features (eigenvalues ~ -1e-8 x the largest) pass."""
    use_metric(monkeypatch, Pooled())
    fake = pngs(tmp_path / "fake", 4, 8, 100, seed=0)
    x = np.random.default_rng(1).random((6, D))  # 6 images < 12 features: a singular covariance
    stats = tmp_path / "real.npz"
    np.savez(stats, mu=x.mean(0).astype(np.float32), sigma=np.cov(x, rowvar=False).astype(np.float32))
    main(["score", str(fake), str(stats), "--json", str(tmp_path / "out.json"), "--no-progress"])
    scored = json.loads((tmp_path / "out.json").read_text())
    assert scored["num_fake"] == 4 and np.isfinite(scored["fid"]) and scored["fid"] > 0


def test_a_damaged_cache_file_is_refused_by_name_and_recomputed_when_found_by_key(tmp_path, caplog):
    """FIDMonitor and score read the cache through the same checks as a statistics file."""
    images = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    real = from_loader([images], (0.0, 1.0), 10, "real")
    metric = FrechetInceptionDistance(feature=Pooled(), reset_real_features=False, normalize=False)
    first = real_statistics(metric, real, EXTRACTOR, tmp_path)
    stats = torch.load(first.path, weights_only=True)
    stats["real_features_cov_sum"][2, 2] = float("nan")
    torch.save(stats, first.path)
    with pytest.raises(ValueError, match=r"real-.*\.pt: `sigma` holds 1 NaN or infinite values"):
        read_stats_file(first.path, EXTRACTOR, D)
    with caplog.at_level(logging.WARNING):
        again = real_statistics(metric, real, EXTRACTOR, tmp_path)
    assert "ignoring unreadable cache" in caplog.text and "NaN" in caplog.text
    assert again.cached is False and torch.equal(again.states[1], first.states[1])
    with pytest.raises(
        ValueError, match=rf"statistics of {D} features, but the feature extractor gives 2048"
    ):
        read_stats_file(first.path, EXTRACTOR, 2048)


def test_fake_files_that_are_no_images_name_the_file_and_what_to_do(tmp_path, capsys, monkeypatch):
    use_metric(monkeypatch, Untouchable())
    fake = tmp_path / "fake"
    fake.mkdir()
    for name in ("a.png", "b.png"):
        (fake / name).write_bytes(b"these are not the pixels you are looking for")
    real = pngs(tmp_path / "real", 4, 8, 100, seed=1)
    code, line = run_score([str(fake), str(real)], capsys)
    assert code == 2
    assert line.startswith(f"facegan score: error: FAKE '{fake}': cannot read image {fake / 'a.png'}: ")
    assert "UnidentifiedImageError" in line and "fix or remove the file, or give --skip-bad-images" in line
    code, line = run_score([str(fake), str(real), "--skip-bad-images"], capsys)
    assert code == 2 and line == f"facegan score: error: FAKE '{fake}': none of its 2 image files can be read"


def test_unreadable_images_suggest_an_option_score_has_and_it_skips_them(tmp_path, capsys, monkeypatch):
    use_metric(monkeypatch, Pooled())
    fake = pngs(tmp_path / "fake", 5, 8, 100, seed=0)
    real = pngs(tmp_path / "real", 5, 8, 140, seed=1)
    (real / "002.png").write_bytes(b"\x89PNG truncated")
    (fake / "004.png").write_bytes(b"")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    code, line = run_score([str(fake), str(real), *cache], capsys)
    assert code == 2 and f"cannot read image {real / '002.png'}: UnidentifiedImageError" in line, line
    assert "(--skip-bad-images) to skip unreadable images" in line and "--data." not in line
    out = tmp_path / "out.json"
    with pytest.warns(UserWarning) as warned:
        main(
            ["score", str(fake), str(real), *cache, "--skip-bad-images", "--json", str(out), "--no-progress"]
        )
    skipped = sorted(str(w.message) for w in warned if str(w.message).startswith("skipped: "))
    assert len(skipped) == 2 and str(fake / "004.png") in skipped[0] and str(real / "002.png") in skipped[1]
    assert all("--data." not in text and "(--skip-bad-images)" in text for text in skipped), skipped
    scored = json.loads(out.read_text())
    assert (scored["num_fake"], scored["num_real"]) == (4, 4) and scored["fid"] > 0
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    assert "--skip-bad-images" in capsys.readouterr().out


def test_fid_eigenvalues_run_on_one_thread_with_the_same_value(monkeypatch):
    """FID's eigenvalue step collapses under thread contention (DESIGN.md): one thread, same value."""
    metric = FrechetInceptionDistance(feature=Pooled(), reset_real_features=False, normalize=False)
    generator = torch.Generator().manual_seed(0)
    real = (torch.rand(40, 3, 8, 8, generator=generator) * 255).to(torch.uint8)
    fake = (torch.rand(40, 3, 8, 8, generator=generator) ** 2 * 255).to(torch.uint8)
    metric.update(real, real=True)
    threads_seen = []
    eigvals = torch.linalg.eigvals

    def spy(matrix: torch.Tensor) -> torch.Tensor:
        threads_seen.append(torch.get_num_threads())
        return eigvals(matrix)

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        metric.update(fake, real=False)
        several = float(metric.compute())  # torchmetrics itself, on 2 threads
        monkeypatch.setattr(torch.linalg, "eigvals", spy)
        fid = FID(metric, EXTRACTOR, kid=False)([fake])["fid"]
        assert threads_seen == [1] and torch.get_num_threads() == 2  # one thread, then 2 again
        assert fid == pytest.approx(several, rel=1e-6)
        from facegan.metrics.fid import one_thread

        with pytest.raises(RuntimeError, match="inside"), one_thread():
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 2  # also after an error
    finally:
        torch.set_num_threads(threads)


def test_a_seed_out_of_range_is_refused_naming_seed_before_any_work(tmp_path, capsys, monkeypatch):
    use_metric(monkeypatch, Untouchable())
    pngs(tmp_path / "fake", 4, 8, 100, seed=0)
    pngs(tmp_path / "real", 4, 8, 100, seed=1)
    code, line = run_score([str(tmp_path / "fake"), str(tmp_path / "real"), "--seed", str(2**64)], capsys)
    assert code == 2
    assert line.endswith(
        "--seed must be in [-9223372036854775808, 18446744073709551615], but got 18446744073709551616"
    )
