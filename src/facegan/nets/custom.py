"""A user's own networks (``FaceGAN(generator=MyG(...), discriminator=MyD(...))``) and the record that
rebuilds them, under the contract of :mod:`facegan.nets.registry`.

Checkpoints and exports keep no pickled object but a *record*, in the form jsonargparse (and so
``python -m facegan fit --config``) reads: ``{"class_path": "my_package.nets.MyG", "init_args": {...}}``.
The arguments are read back from the network as attributes of the same name (as scikit-learn reads an
estimator's parameters), so ``__init__`` must store each of them unchanged, as JSON values; a record is
checked when made by rebuilding the class on the meta device and comparing every tensor's shape.
Building from a record imports the named module and runs its code: facegan's file readers do so only
when told to trust the file (``trust_code=True``, ``--trust-code``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from typing import Any

import torch
from torch import nn

CLASS_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")  # module.Class, module a dotted name


def _plain_json(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists); ``ValueError`` when it is no JSON value."""
    return json.loads(json.dumps(value, allow_nan=False))


def net_record(net: nn.Module, role: str) -> dict[str, Any]:
    """``{"class_path", "init_args"}`` that rebuilds ``net`` (``role``: ``"generator"`` or
    ``"discriminator"``, for messages); ``ValueError`` saying what to change when it cannot be made."""
    cls = type(net)
    name = f"FaceGAN: the {role} {cls.__qualname__}"
    if "." in cls.__qualname__:  # Outer.Inner, f.<locals>.G: not importable by module.Class
        raise ValueError(
            f"{name} is defined inside a function or class; define it at the top level of a module, so "
            "checkpoints and exports can import it again"
        )
    init_args: dict[str, Any] = {}
    for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:  # type: ignore[misc]
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ValueError(f"{name}: __init__ takes *{param.name}; name each argument instead")
        if not hasattr(net, param.name):
            raise ValueError(
                f"{name} does not keep its __init__ argument {param.name!r} as an attribute; store it "
                f"(`self.{param.name} = {param.name}` in __init__): checkpoints and exports rebuild the "
                "network from these arguments"
            )
        try:
            init_args[param.name] = _plain_json(getattr(net, param.name))
        except (TypeError, ValueError):
            raise ValueError(
                f"{name}: its __init__ argument {param.name!r} is {getattr(net, param.name)!r}, which a "
                "checkpoint cannot record; give numbers, strings, booleans, None or lists/dicts of them"
            ) from None
    record = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}
    given = {key: tuple(t.shape) for key, t in net.state_dict().items()}
    with torch.device("meta"):
        rebuilt = {key: tuple(t.shape) for key, t in cls(**init_args).state_dict().items()}
    if rebuilt != given:
        differ = sorted(set(given) ^ set(rebuilt)) or [k for k in given if given[k] != rebuilt[k]]
        raise ValueError(
            f"{name} rebuilt from its recorded arguments {init_args} has other tensors than the one given "
            f"(e.g. {differ[0]!r}: {given.get(differ[0])} given, {rebuilt.get(differ[0])} rebuilt): "
            "__init__ must store each argument unchanged as an attribute of the same name"
        )
    return record


def checked_record(record: Any, where: str) -> tuple[str, dict[str, Any]]:
    """The class path and init arguments of ``record``, its form checked (``ValueError`` naming ``where``)."""
    if (
        not isinstance(record, dict)
        or set(record) - {"class_path", "init_args"}
        or not isinstance(record.get("class_path"), str)
        or not isinstance(record.get("init_args", {}), dict)
    ):
        raise ValueError(
            f"{where} must be {{'class_path': 'module.Class', 'init_args': {{...}}}}, but got {record!r}"
        )
    class_path = record["class_path"]
    if CLASS_PATH.fullmatch(class_path) is None:
        raise ValueError(f"{where}: class_path must be 'module.Class', but got {class_path!r}")
    return class_path, dict(record.get("init_args", {}))


def build_from_record(record: Any, where: str) -> nn.Module:
    """Import the class ``record`` names and build it from its init arguments. This runs the module's
    code: callers that read a file check the user trusts it first (:func:`refuse_untrusted`)."""
    class_path, init_args = checked_record(record, where)
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        hint = (
            " (a class of the script that trained it: move it into a module)"
            if module_name == "__main__"
            else ""
        )
        raise ValueError(f"{where}: cannot import {class_path!r}{hint}: {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{where}: {class_path!r} is not an nn.Module class")
    try:
        return cls(**init_args)
    except TypeError as error:
        raise ValueError(f"{where}: {class_path}(**{init_args}) failed: {error}") from None


def refuse_untrusted(records: dict[str, Any], where: str, trust_code: bool) -> None:
    """``ValueError`` unless ``trust_code`` when ``records`` (role -> record or ``None``) name classes
    to import: building them runs code from the modules the file names."""
    named = {role: record for role, record in records.items() if record is not None}
    if named and not trust_code:
        listed = ", ".join(f"{role} {checked_record(r, where)[0]!r}" for role, r in named.items())
        raise ValueError(
            f"{where} names its own network classes ({listed}); loading it imports them and runs their "
            "code. If you trust it, pass --trust-code (trust_code=True in Python)"
        )


def check_pair(generator: nn.Module, discriminator: nn.Module, latent_dim: int, image_size: int) -> None:
    """Run ``generator`` and ``discriminator`` once on two latents (eval mode, no gradients, their own
    RNG) and raise ``ValueError`` unless the shapes keep facegan's contract."""
    device = next(iter(generator.parameters()), torch.empty(0)).device
    z = torch.randn(2, latent_dim, generator=torch.Generator().manual_seed(0)).to(device)
    modes = generator.training, discriminator.training
    generator.eval(), discriminator.eval()
    try:
        with torch.no_grad():
            images = generator(z)
            expected = (2, 3, image_size, image_size)
            if not isinstance(images, torch.Tensor) or tuple(images.shape) != expected:
                got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
                raise ValueError(
                    f"FaceGAN: the generator {type(generator).__name__} maps z (2, {latent_dim}) to {got}, "
                    f"but must give images {expected} (image_size={image_size})"
                )
            images = images.to(next(iter(discriminator.parameters()), images).device)
            logits = discriminator(images)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2,):
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ValueError(
                    f"FaceGAN: the discriminator {type(discriminator).__name__} maps images (2, 3, "
                    f"{image_size}, {image_size}) to {got}, but must give one logit per image, (2,) "
                    "(e.g. end forward with `.flatten()` or `.squeeze(1)`)"
                )
    finally:
        generator.train(modes[0]), discriminator.train(modes[1])
