"""Notifications: hooks configured in xp.toml, fed from a durable outbox."""
