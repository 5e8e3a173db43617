"""Packet capture tasks, at the paths of netUnicorn's ``netunicorn.library.tasks.capture``."""
