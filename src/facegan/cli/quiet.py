"""What the command line does not print: library notices a user cannot act on, and 128 lines of usage
for one mistyped flag.

Each notice is silenced where it is made, by its own text (and category or logger), never by a
blanket filter: a new warning from the same libraries still shows. ``tests/test_cli.py`` runs a
default fit and a Ctrl-C and fails if any of them comes back.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import re
import sys
import warnings
from collections.abc import Mapping
from typing import Any, NoReturn

from lightning.pytorch.cli import LightningArgumentParser

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


class _DropMessages(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def silence_library_notices() -> None:
    """Install the filters of :data:`LOGGED` and :data:`WARNED` (once; the command line calls it)."""
    for name, pattern in LOGGED:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(_DropMessages(pattern))
    for message, category, module in WARNED:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def options_in(help_text: str) -> list[str]:
    """The ``--options`` a parser's help lists (``--data.root``, ``--trainer.accelerator``, ...)."""
    return sorted(set(re.findall(r"(?<![\w-])(--[A-Za-z_][\w.-]*)", help_text)))


def unknown_options(message: str) -> list[str]:
    """The options of jsonargparse's ``"unrecognized arguments: --data.roots x"``."""
    found = re.search(r"[Uu]nrecognized arguments: (.*)", message)
    return [] if found is None else [t.split("=")[0] for t in found.group(1).split() if t.startswith("--")]


def one_line(prog: str, message: str, help_text: str) -> str:
    """A parser's error as one line: an unknown option with the closest one ``help_text`` lists."""
    line = f"{prog}: error: {' '.join(message.split()).rstrip('.')}"  # the parser's lines, joined
    unknown = unknown_options(message)
    if unknown:
        close = difflib.get_close_matches(unknown[0], options_in(help_text), n=1, cutoff=0.6)
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
    """LightningCLI's parser, answering a mistake in one line (and exit code 2) instead of the full usage.

    An unknown option gets the closest valid one: ``--data.roots`` -> "did you mean --data.root?".
    """

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser: Any = getattr(ex, "subcommand_parser", None) or self
        sys.stderr.write(
            one_line(parser.prog.replace(" [options]", ""), message, parser.format_help()) + "\n"
        )
        self.exit(2)
