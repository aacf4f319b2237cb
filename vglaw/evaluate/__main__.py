"""`python -m vglaw.evaluate` (see vglaw/eval/evaluate.py)."""

import sys

from vglaw.eval.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
