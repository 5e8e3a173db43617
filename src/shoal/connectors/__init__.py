"""How controllers and agents get onto machines: ``local`` subprocesses, and the
``inventory`` of a testbed's hosts (read only: nothing connects to them yet)."""
