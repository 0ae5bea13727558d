"""Train fleetmarl agents: ``python main.py [--config FILE] [--set KEY=VALUE ...] [--resume latest|PATH]``.

The same as ``fleetmarl train``; reads ``config.py`` in the current directory by default.
"""

import sys
from pathlib import Path

try:
    from fleetmarl.cli import main
except ModuleNotFoundError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    from fleetmarl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
