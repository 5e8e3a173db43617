"""The agent: one per node; connects out to the controller and runs executors."""
