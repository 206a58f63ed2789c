"""python -m healthgym_core.configs: every named configuration with where it comes from and what it scored."""

import sys

from healthgym_core import cli
from healthgym_core.configs import main

if __name__ == "__main__":
    sys.exit(cli.run(lambda argv: main()))
