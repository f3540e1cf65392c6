"""Backends of the scheduler: local (this machine's free GPUs) and ray (a Ray cluster)."""
