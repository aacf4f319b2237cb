"""`python -m vglaw.workbook` (see vglaw/workbook/runner.py)."""

import sys

from vglaw.workbook.runner import main

if __name__ == "__main__":
    sys.exit(main())
