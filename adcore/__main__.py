"""``python -m adcore``: see :mod:`adcore.cli`."""

from adcore.cli import main

raise SystemExit(main())
