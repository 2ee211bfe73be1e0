"""Entry point for `python -m securealign`."""

import sys

from securealign.cli import main

sys.exit(main())
