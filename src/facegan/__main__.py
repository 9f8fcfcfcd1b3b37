"""``python -m facegan``: ``fit``/``validate``/``test`` (:mod:`facegan.cli`, LightningCLI) and
``generate``/``export`` (:mod:`facegan.cli.tools`)."""

import sys

TOOLS = ("generate", "export")

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in TOOLS:
        from facegan.cli.tools import main as tools_main

        tools_main()
    else:
        from facegan.cli import main
        from facegan.data.decode import BadImageError, error_message

        try:
            main()
        except BadImageError as error:  # one clear line, not a loader worker's traceback
            sys.exit(f"facegan: error: {error_message(error)}")
