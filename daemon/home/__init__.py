"""The home: Home Assistant devices over MQTT, and the tools the model uses on them.

Reading order: `service` (what runs), `inventory` (what is known), `discovery` and
`components/` (what a device is and can do, one module per component), `commands`
and `executor` (one call, one publish, one answer), `sensitivity`, `confirm`,
`consent` and `admission` (what needs the user's yes), `model_tools` (what the
model sees), `own_device` (the daemon as a Home Assistant device), `mqtt/` (the
connection). Nothing here imports the generic tools layer (daemon.tools) above it.
"""
