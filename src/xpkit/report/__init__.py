"""Roll-ups: group runs, aggregate over seeds, render Markdown reports with curves."""
