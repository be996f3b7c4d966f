"""`python -m labkit ...` is the same as the `labkit` command (torchrun needs this form)."""

import sys

from labkit.cli import main

sys.exit(main())
