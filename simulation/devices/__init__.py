"""Device simulator: virtual OPC-UA lamp controllers and MQTT sensors (docs/devices.md)."""
