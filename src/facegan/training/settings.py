"""What :class:`facegan.FaceGAN` accepts: its settings checked together, and the networks they imply
(a user's own, or the registry's built from ``arch``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from facegan.nets import FAMILIES, NetworkConfig, build_discriminator, build_generator
from facegan.nets.custom import build_from_record, check_pair, net_record

DEFAULT_LATENT_DIM = 128  # the registry's generators' latent size when `latent_dim` is left unset
ARCH_ONLY = {"generator": ("g_channels",), "discriminator": ("d_channels", "spectral_norm")}


def check_settings(hp: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first setting of ``hp`` (FaceGAN's hparams) that is out of range."""
    if hp["arch"] == "keras" and (hp["g_channels"] is not None or hp["d_channels"] is not None):
        raise ValueError(
            "FaceGAN: `g_channels`/`d_channels` set the dcgan widths; the 'keras' architecture has "
            "fixed widths, so leave them unset (null)"
        )
    if hp["blocks_per_stage"] is not None and (hp["arch"] != "r3gan" or hp["blocks_per_stage"] < 1):
        raise ValueError(
            f"FaceGAN: `blocks_per_stage` applies to arch='r3gan' only (an integer >= 1); got "
            f"{hp['blocks_per_stage']} with arch={hp['arch']!r}"
        )
    for name, rule, ok in (
        ("r1_gamma", ">= 0", hp["r1_gamma"] >= 0),
        ("r1_every", "an integer >= 1", hp["r1_every"] >= 1),
        ("n_disc_steps", "an integer >= 1", hp["n_disc_steps"] >= 1),
        ("label_noise", ">= 0", hp["label_noise"] >= 0),
        ("num_samples", ">= 1", hp["num_samples"] >= 1),
        ("r2_gamma", ">= 0", hp["r2_gamma"] >= 0),
        ("ema_kimg", "> 0 or null (no EMA)", hp["ema_kimg"] is None or hp["ema_kimg"] > 0),
        ("ema_rampup", "> 0 or null", hp["ema_rampup"] is None or hp["ema_rampup"] > 0),
    ):
        if not ok:
            raise ValueError(f"FaceGAN: `{name}` must be {rule}, but got {hp[name]}")
    if hp["ada_target"] is not None and not (0 < hp["ada_target"] < 1 and hp["ada_kimg"] > 0):
        raise ValueError(
            f"FaceGAN: `ada_target` must be in (0, 1) (ADA: 0.6) or null, and `ada_kimg` > 0; got "
            f"ada_target={hp['ada_target']}, ada_kimg={hp['ada_kimg']}"
        )
    if hp["ada_target"] is not None and not hp["augment"].strip(" ,"):
        raise ValueError(
            "FaceGAN: `ada_target` adapts the strength of the `augment` policy, which is empty; give "
            "one, e.g. augment='color,translation' (--model.augment color,translation)"
        )
    if hp["label_noise"] and hp["loss"] != "nonsaturating":
        raise ValueError("FaceGAN: `label_noise` applies to loss='nonsaturating' only")


def networks(
    hp: Mapping[str, Any], given: dict[str, Any]
) -> tuple[nn.Module, nn.Module, NetworkConfig | None, dict[str, Any]]:
    """FaceGAN's ``(generator, discriminator, config, hparams)``: each network the one ``given`` (an
    ``nn.Module`` or its record, :mod:`facegan.nets.custom`), else ``arch``'s; the :class:`NetworkConfig`
    of ``arch``'s (``None`` when none is built); the hparams that record them: ``latent_dim`` (a given
    generator's; else the argument, 128 when unset) and the ``generator``/``discriminator`` records."""
    nets = {
        role: build_from_record(net, f"FaceGAN `{role}`") if isinstance(net, dict) else net
        for role, net in given.items()
    }
    for role, names in ARCH_ONLY.items():
        for name in names:
            if nets[role] is not None and hp[name] is not None:
                raise ValueError(
                    f"FaceGAN: `{name}` sets up the registry's {role}; with your own {role} leave it "
                    "unset (null) and configure your network itself"
                )
    latent_dim = hp["latent_dim"]
    if nets["generator"] is not None:
        own = getattr(nets["generator"], "latent_dim", None)
        if isinstance(own, bool) or not isinstance(own, int) or own < 1:
            raise ValueError(
                f"FaceGAN: the generator {type(nets['generator']).__name__} has no integer `latent_dim` "
                f"attribute (got {own!r}); set `self.latent_dim` in its __init__: facegan draws latents "
                "of that size"
            )
        if latent_dim is not None and latent_dim != own:
            raise ValueError(
                f"FaceGAN: `latent_dim` is {latent_dim}, but the generator's `latent_dim` is {own}; leave "
                "`latent_dim` unset (null): it is read from your generator"
            )
        latent_dim = own
    latent_dim = DEFAULT_LATENT_DIM if latent_dim is None else latent_dim
    generator, discriminator, config = nets["generator"], nets["discriminator"], None
    if generator is None or discriminator is None:  # arch's; None widths: the papers' (R3GAN's 768)
        arch, spectral_norm, width = hp["arch"], hp["spectral_norm"], 768 if hp["arch"] == "r3gan" else 64
        if spectral_norm is None:  # the family's default (an unknown arch: NetworkConfig names it)
            spectral_norm = arch in FAMILIES and FAMILIES[arch].spectral_norm_default
        config = NetworkConfig(
            arch=arch,
            image_size=hp["image_size"],
            latent_dim=latent_dim,
            g_channels=width if hp["g_channels"] is None else hp["g_channels"],
            d_channels=width if hp["d_channels"] is None else hp["d_channels"],
            blocks_per_stage=hp["blocks_per_stage"] or 2,
            spectral_norm=spectral_norm,
        )
        if generator is None:
            generator = build_generator(config)
        if discriminator is None:
            discriminator = build_discriminator(config)
    if any(net is not None for net in nets.values()):  # a given network: the pair's shapes checked
        check_pair(generator, discriminator, latent_dim, hp["image_size"])
    records = {role: None if net is None else net_record(net, role) for role, net in nets.items()}
    return generator, discriminator, config, {"latent_dim": latent_dim, **records}
