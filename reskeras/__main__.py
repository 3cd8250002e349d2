"""``python -m reskeras`` is the ``reskeras`` console script."""

import sys

from reskeras.cli import main

sys.exit(main())
