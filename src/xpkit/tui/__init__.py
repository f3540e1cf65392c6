"""`xp top`: the lab's GPUs, queue and runs, live in a terminal (Textual, an extra)."""
