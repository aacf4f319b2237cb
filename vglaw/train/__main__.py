"""`python -m vglaw.train` (see vglaw/train/cli.py)."""

import sys

from vglaw.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
