"""spd-gateway: the REST API 1.2 over HTTP, forwarded to spd over D-Bus."""
