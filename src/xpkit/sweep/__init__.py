"""`xp sweep`: search beyond a grid with Optuna, over the queue (see controller.py)."""
