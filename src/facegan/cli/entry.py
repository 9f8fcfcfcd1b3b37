"""The ``facegan`` command (and ``python -m facegan``): one entry point for every subcommand.

``fit``/``validate``/``test`` go to LightningCLI (:mod:`facegan.cli.trainer`), ``generate``/``export``/
``prepare`` to :mod:`facegan.cli.tools`; ``--help`` lists them all.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # src/facegan

TRAINER_COMMANDS = {
    "fit": "train a model (every setting: fit --help; a recipe: fit --config configs/NAME.yaml)",
    "validate": "run the validation loop of a checkpoint (--ckpt_path)",
    "test": "run the test loop of a checkpoint (--ckpt_path)",
}


def usage(prog: str) -> str:
    from facegan.cli.tools import TOOLS

    lines = [f"usage: {prog} {{{','.join([*TRAINER_COMMANDS, *TOOLS])}}} ...", "", "subcommands:"]
    lines += [f"  {name:<9} {text}" for name, text in {**TRAINER_COMMANDS, **TOOLS}.items()]
    lines += ["", f"`{prog} SUBCOMMAND --help` shows the options of one subcommand."]
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "facegan") -> None:
    """Dispatch ``argv`` (default: ``sys.argv[1:]``) to the subcommand it names."""
    from facegan.cli.quiet import silence_library_notices
    from facegan.cli.tools import TOOLS

    silence_library_notices()
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage(prog))
        raise SystemExit(0 if args else 2)
    commands = [*TRAINER_COMMANDS, *TOOLS]
    if not args[0].startswith("-") and args[0] not in commands:  # options may come first: --config X fit
        close = difflib.get_close_matches(args[0], commands, n=1)
        guess = f"; did you mean {close[0]}?" if close else ""
        sys.stderr.write(
            f"{prog}: error: unknown subcommand {args[0]!r}{guess} (`{prog} --help` lists them)\n"
        )
        raise SystemExit(2)
    if args[0] in TOOLS:
        from facegan.cli.tools import main as tools_main

        tools_main(args, prog)
        return
    from facegan.cli.trainer import main as trainer_main
    from facegan.data.decode import BadImageError, error_message

    try:
        trainer_main(None if argv is None else args, prog=prog)  # None: LightningCLI reads sys.argv itself
    except SystemExit as stop:
        if isinstance(stop.__context__, KeyboardInterrupt):  # Lightning exits 1 after a KeyboardInterrupt
            raise SystemExit(130) from None  # the shell's code for Ctrl-C (128 + SIGINT)
        raise
    except BadImageError as error:  # one clear line (unreadable images, none left), no worker traceback
        sys.exit(f"facegan: error: {error_message(error)}")
    except (ValueError, TypeError, OSError) as error:
        if os.environ.get("FACEGAN_TRACEBACK") or not raised_by_facegan(error):
            raise
        sys.exit(f"facegan: error: {error} (FACEGAN_TRACEBACK=1 shows where)")


def raised_by_facegan(error: BaseException) -> bool:
    """Whether facegan's own code raised ``error`` (its checks of settings and files, whose message
    says what to do), rather than a library or a bug deeper down."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE)
