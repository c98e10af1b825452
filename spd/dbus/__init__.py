"""D-Bus adapters for the daemon's domain code."""
