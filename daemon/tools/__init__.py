"""The generic tool layer: registry, argument validation, dispatch; nothing about MQTT."""
