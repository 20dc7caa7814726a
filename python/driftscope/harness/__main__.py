"""`python -m driftscope.harness ...` (or `python -m driftscope_harness ...`): see cli.py."""

import sys

from .cli import main

sys.exit(main())
