"""``python -m simulator.live_server``: the fake Live server standalone."""

from simulator.live_server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
