"""`python -m vglaw.visualize` (see vglaw/eval/visualize.py)."""

import sys

from vglaw.eval.visualize import main

if __name__ == "__main__":
    sys.exit(main())
