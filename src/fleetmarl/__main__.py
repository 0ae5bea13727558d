"""``python -m fleetmarl ...`` is the ``fleetmarl`` command (tests and checkouts without the script)."""

import sys

from fleetmarl.cli import main

sys.exit(main())
