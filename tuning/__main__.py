"""``python -m tuning`` is ``reskeras tune``."""

import sys

from reskeras.cli import main

sys.exit(main(["tune", *sys.argv[1:]]))
