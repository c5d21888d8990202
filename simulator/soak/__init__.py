"""An hour of chaos: the real daemon among simulated parts, under seeded faults.

`edge-agent sim soak` runs the daemon as a child process (so it can be SIGKILLed)
with virtual glasses on the virtual radio, the fake Live server over TLS and the
virtual home on a private mosquitto, through a looping conversation, while one
fault at a time is fired at random (seeded) and its recovery timed. Then it checks
what every side recorded: no crash or unhandled exception, every fault recovered
within its bound, every tool call answered once, no device command twice, audio
lost only where counted, no leak, and the daemon's counters matching the faults.

The parts, in reading order:

- plan.py        the faults (kinds, order, parameters, bounds) and the conversation
- rig.py         the simulated world and its observers (glasses host, command monitor)
- daemon_proc.py the daemon as a child: config, lifetimes, /metrics, /healthz, /proc
- injector.py    fires one fault and times the way back
- runner.py      one run from start to evidence
- evidence.py    what a run leaves behind, as plain data
- checks.py      process, recovery, tool calls, commands, conversation
- accounting.py  audio, resources, counters against the injector
- report.py      the figure tables, RESULTS.md
- cli.py         ``edge-agent sim soak``
"""

from simulator.soak.cli import main

__all__ = ["main"]
