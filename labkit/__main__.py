"""`python -m labkit ...` is the same as the `labkit` command (torchrun needs this form)."""

from labkit.cli import main

raise SystemExit(main())
