"""`python -m daemon`: the `edge-agent` command."""

from daemon.cli import main

raise SystemExit(main())
