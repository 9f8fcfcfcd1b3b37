"""``python -m facegan``: see :mod:`facegan.cli`."""

from facegan.cli import main

if __name__ == "__main__":
    main()
