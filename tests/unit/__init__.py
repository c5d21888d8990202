"""Unit tests: no sockets, no processes, no waiting on the clock (see conftest.py)."""
