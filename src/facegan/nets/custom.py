"""A user's own networks (``FaceGAN(generator=MyG(...))``, under the contract of :mod:`facegan.nets`) and
the record that rebuilds them without pickle, in jsonargparse's form: ``{"class_path": "pkg.MyG",
"init_args": {...}}``. The arguments are read back as attributes of the same name (as scikit-learn does),
and checked by a rebuild on the meta device. Building imports the module and runs its code: file readers
do so only with ``trust_code=True`` (``--trust-code``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

CLASS_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")  # module.Class, module a dotted name


def meta_shapes(build: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """Every state-dict tensor shape of the network ``build`` makes, built on the meta device (no memory)."""
    with torch.device("meta"):
        net = build()
    return {name: tuple(tensor.shape) for name, tensor in net.state_dict().items()}


def shape_differences(a: dict[str, tuple[int, ...]], b: dict[str, tuple[int, ...]]) -> list[str]:
    """The tensors only one of ``a`` and ``b`` names, else those they shape differently."""
    return sorted(set(a) ^ set(b)) or [name for name in a if a[name] != b[name]]


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
            value = json.dumps(getattr(net, param.name), allow_nan=False)  # no JSON value: ValueError
            init_args[param.name] = json.loads(value)  # as a checkpoint gives it back: tuples as lists
        except (TypeError, ValueError):
            raise ValueError(
                f"{name}: its __init__ argument {param.name!r} is {getattr(net, param.name)!r}, which a "
                "checkpoint cannot record; give numbers, strings, booleans, None or lists/dicts of them"
            ) from None
    record = {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}
    given = {key: tuple(t.shape) for key, t in net.state_dict().items()}
    rebuilt = meta_shapes(lambda: cls(**init_args))
    if rebuilt != given:
        differ = shape_differences(given, rebuilt)
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
    size = f"{image_size}, {image_size}"
    try:
        with torch.no_grad():
            images = _checked(
                generator(z),
                (2, 3, image_size, image_size),
                f"the generator {type(generator).__name__} maps z (2, {latent_dim})",
                f"images (2, 3, {size}) (image_size={image_size})",
            )
            images = images.to(next(iter(discriminator.parameters()), images).device)
            _checked(
                discriminator(images),
                (2,),
                f"the discriminator {type(discriminator).__name__} maps images (2, 3, {size})",
                "one logit per image, (2,) (e.g. end forward with `.flatten()` or `.squeeze(1)`)",
            )
    finally:
        generator.train(modes[0]), discriminator.train(modes[1])


def _checked(output: Any, shape: tuple[int, ...], what: str, must: str) -> torch.Tensor:
    """``output`` if it is a tensor of ``shape``; else ``ValueError``: "FaceGAN: {what} to ..., but must give {must}"."""
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != shape:
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"FaceGAN: {what} to {got}, but must give {must}")
    return output
