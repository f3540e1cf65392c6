"""How one run executes: its snapshot workspace and the runner around the command."""
