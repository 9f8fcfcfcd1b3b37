"""``python -m facegan``: the ``facegan`` command (:mod:`facegan.cli.entry`)."""

from facegan.cli.entry import main

if __name__ == "__main__":
    main(prog="python -m facegan")
