"""Running as a service: sd_notify, watchdog, /healthz, /metrics, logging, state directory."""
