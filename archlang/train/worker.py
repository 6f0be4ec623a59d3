"""One DDP worker of `archc train --nproc P`: started by torch.distributed.run (which sets RANK,
WORLD_SIZE, LOCAL_RANK and the rendezvous), it runs the same `archc train` command."""

import json
import os
import sys

from archlang.cli import main
from archlang.train import ARGV_VARIABLE

if __name__ == "__main__":
    sys.exit(main(json.loads(os.environ[ARGV_VARIABLE])))
