"""``python -m simmta``: the same entry point as the ``simmta`` command."""

from simmta.cli import main

raise SystemExit(main())
