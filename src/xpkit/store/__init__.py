"""Files are the truth: run directories, their index, the trash."""
