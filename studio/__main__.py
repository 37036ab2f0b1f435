"""`python -m studio [--demo] [--demo-steps N --screenshot PATH] [run.yaml]`."""

import sys

from studio.app import main

if __name__ == "__main__":
    sys.exit(main())
