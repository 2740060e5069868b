"""The risk domain: pure, no I/O (no Kafka, database, HTTP or clock)."""
