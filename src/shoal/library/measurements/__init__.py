"""Measurement tasks, at the paths of netUnicorn's ``netunicorn.library.tasks.measurements``."""
