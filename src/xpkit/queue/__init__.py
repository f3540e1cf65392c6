"""Where runs execute: the job queue in the runs root, workers, executors."""
