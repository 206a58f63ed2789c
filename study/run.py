"""python study/run.py --space curriculum [options]: run a study (see --help)."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from healthgym_core import cli  # noqa: E402
from study.driver import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli.run(main))
