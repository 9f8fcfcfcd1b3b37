"""The ``facegan`` command: ``fit``/``validate``/``test`` to LightningCLI (:mod:`facegan.cli.trainer`), the
others to :mod:`facegan.cli.tools`. A mistake, or an error of facegan's own checks, is one line. Library
notices a user cannot act on are silenced one by one, by their text, so a new one still shows
(``tests/test_cli_output.py`` fails if any comes back)."""

from __future__ import annotations

import argparse
import difflib
import functools
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from lightning.pytorch.cli import LightningArgumentParser

PACKAGE = Path(__file__).resolve().parents[1]  # src/facegan
TRAINER_COMMANDS = {
    "fit": "train a model (every setting: fit --help; a recipe: fit --config configs/NAME.yaml)",
    "validate": "run the validation loop of a checkpoint (--ckpt_path)",
    "test": "run the test loop of a checkpoint (--ckpt_path)",
}
# (logger, message pattern): notices Lightning logs that say nothing about this run.
LOGGED = (
    # "💡 Tip: ... try installing [litlogger]" (and [litmodels]): advertisements, on every fit
    ("lightning.pytorch.utilities.rank_zero", r"💡 Tip: "),
    ("lightning.fabric.utilities.rank_zero", r"💡 Tip: "),
    # "[rank: 0] Received SIGTERM: 15": facegan's own line says what the stop does (CheckpointOnInterrupt)
    ("lightning.pytorch.trainer.connectors.signal_connector", r"(\[rank: \d+\] )?Received SIGTERM: "),
)
# (message pattern, category, module pattern): warnings raised inside a library about the library.
WARNED = (
    # torch 2.10+ deprecates `isinstance(x, LeafSpec)`, which Lightning's own _pytree.py still uses
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree",
    ),
)


@functools.cache  # one filter per pattern, which addFilter adds once
def _drop(pattern: str) -> Callable[[logging.LogRecord], bool]:
    return lambda record: not re.match(pattern, record.getMessage())


def silence_library_notices() -> None:
    """Install the filters of :data:`LOGGED` and :data:`WARNED` (once)."""
    for name, pattern in LOGGED:
        logging.getLogger(name).addFilter(_drop(pattern))
    for message, category, module in WARNED:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def one_line(prog: str, message: str, help_text: str) -> str:
    """A parser's error as one line; an unknown option (``"unrecognized arguments: --data.roots x"``)
    with the closest one ``help_text`` lists."""
    line = f"{prog}: error: {' '.join(message.split()).rstrip('.')}"  # the parser's lines, joined
    found = re.search(r"[Uu]nrecognized arguments: (.*)", message)
    unknown = [t.split("=")[0] for t in found.group(1).split() if t.startswith("--")] if found else []
    if unknown:
        options = sorted(set(re.findall(r"(?<![\w-])(--[A-Za-z_][\w.-]*)", help_text)))
        close = difflib.get_close_matches(unknown[0], options, n=1, cutoff=0.6)
        line = f"{prog}: error: unknown option {unknown[0]}" + (
            f"; did you mean {close[0]}?" if close else ""
        )
    return f"{line} (`{prog} --help` lists every option)"


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse``'s parser (``generate``, ``score``, ...) answering a mistake as :func:`one_line` does."""

    subcommands: Mapping[str, argparse.ArgumentParser]  # set by who adds them: whose options to suggest

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(one_line(self.prog, message, self.format_help()) + "\n")
        self.exit(2)


class OneLineParser(LightningArgumentParser):
    """LightningCLI's parser answering a mistake as :func:`one_line` does (exit code 2)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser: Any = getattr(ex, "subcommand_parser", None) or self
        sys.stderr.write(
            one_line(parser.prog.replace(" [options]", ""), message, parser.format_help()) + "\n"
        )
        self.exit(2)


def main(argv: list[str] | None = None, prog: str = "facegan") -> None:
    """Dispatch ``argv`` (default: ``sys.argv[1:]``) to the subcommand it names."""
    from facegan.cli.tools import TOOLS
    from facegan.cli.tools import main as tools_main

    silence_library_notices()
    args = sys.argv[1:] if argv is None else argv
    commands = {**TRAINER_COMMANDS, **TOOLS}
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: {prog} {{{','.join(commands)}}} ...\n\nsubcommands:")
        print("\n".join(f"  {name:<9} {text}" for name, text in commands.items()))
        print(f"\n`{prog} SUBCOMMAND --help` shows the options of one subcommand.")
        raise SystemExit(0 if args else 2)
    if not args[0].startswith("-") and args[0] not in commands:  # options may come first: --config X fit
        close = difflib.get_close_matches(args[0], commands, n=1)
        guess = f"; did you mean {close[0]}?" if close else ""
        sys.stderr.write(
            f"{prog}: error: unknown subcommand {args[0]!r}{guess} (`{prog} --help` lists them)\n"
        )
        raise SystemExit(2)
    if args[0] in TOOLS:
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
    """Whether facegan's own code raised ``error`` (its checks, whose message says what to do), rather
    than a library or a bug deeper down."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE)
