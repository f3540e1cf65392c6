"""`xp ui`: a local, read-only dashboard over a runs root (the `ui` extra)."""
