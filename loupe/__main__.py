"""``python -m loupe``: see :mod:`loupe.cli`."""

from loupe.cli import main

raise SystemExit(main())
