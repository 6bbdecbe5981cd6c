"""IoT monitoring: gateways, telemetry ingest (downsampled history, latest values), early-warning rules."""
