"""`python -m vglaw.predict` (see vglaw/eval/predict.py)."""

import sys

from vglaw.eval.predict import main

if __name__ == "__main__":
    sys.exit(main())
