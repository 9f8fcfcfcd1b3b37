"""``python -m facegan``: ``fit``/``validate``/``test`` (:mod:`facegan.cli`, LightningCLI) and
``generate``/``export`` (:mod:`facegan.tools`)."""

import sys

TOOLS = ("generate", "export")

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in TOOLS:
        from facegan.tools import main as tools_main

        tools_main()
    else:
        from facegan.cli import main

        main()
