"""The notifier's outside world: its tables, the channel senders, the bus, the secret box."""
