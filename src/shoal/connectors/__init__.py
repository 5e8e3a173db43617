"""How controllers and agents get onto machines: ``local`` subprocesses for now."""
