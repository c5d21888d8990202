"""Integration tests: real mosquitto, Bumble radios, fake servers, subprocesses."""
