"""Small utility tasks, at the paths of netUnicorn's ``netunicorn.library.tasks.utils``."""
