"""Ready-made tasks for pipelines: flags, shell commands, sleeps."""
