"""Stand-ins for every piece of hardware and every remote service the daemon talks to."""
