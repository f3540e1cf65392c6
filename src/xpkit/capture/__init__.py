"""What a run records: code provenance, host facts, GPUs."""
