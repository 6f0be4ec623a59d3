"""One DDP worker of `archc train --nproc P`: started by torch.distributed.run (which sets RANK,
WORLD_SIZE, LOCAL_RANK and the rendezvous), it compiles the network of the job the launching
process left in the environment and runs the same training.  It does not go through the CLI."""

import json
import os
import sys
from pathlib import Path

from archlang.api import compile_file
from archlang.errors import ArchError
from archlang.train import JOB_VARIABLE, DataError, Settings, TrainError, run


def main() -> int:
    job = json.loads(os.environ[JOB_VARIABLE])
    try:
        net = compile_file(job["file"], job["arguments"], plain=job["plain"], network=job["network"])[job["network"]]
        settings = Settings(**job["settings"], explicit=set(job["explicit"]))
        return run(net, settings, Path(job["out"]), job["resume"], job["nproc"])
    except ArchError as err:
        print(str(err), file=sys.stderr)
    except (DataError, TrainError) as err:
        print(f"archc: error: {err}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
