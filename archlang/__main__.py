"""`python -m archlang` runs the archc command line."""

import signal
import sys

try:
    from archlang.cli import main

    code = main()
except KeyboardInterrupt:  # before main's own handler is in place (while importing)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("archc: interrupted", file=sys.stderr)
    code = 130
sys.exit(code)
