"""``python -m export`` is ``reskeras export``."""

import sys

from reskeras.cli import main

sys.exit(main(["export", *sys.argv[1:]]))
