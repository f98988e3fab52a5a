"""`python -m sers.cli ...`: the same as `sers ...`."""
import sys

from sers.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
