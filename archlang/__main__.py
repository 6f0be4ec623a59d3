"""`python -m archlang` runs the archc command line."""

import sys

from archlang.cli import main

sys.exit(main())
