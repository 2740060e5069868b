"""Ingest I/O: publishing ticks to the broker and the running tick sources."""
