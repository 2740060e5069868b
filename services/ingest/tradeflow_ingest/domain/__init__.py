"""Pure ingest logic: no I/O, no clock reads except through what the caller passes in."""
