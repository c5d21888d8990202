"""``python -m simulator.glasses``: the same as ``edge-agent sim glasses``."""

from simulator.glasses.cli import main

raise SystemExit(main())
