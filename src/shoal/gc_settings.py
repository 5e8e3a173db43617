"""The cyclic garbage collector's settings for shoal's own long-running processes.

Python runs a collection of the youngest generation every 700 allocations of
container objects, and the older generations every 10 of those. A controller,
an agent or a task worker allocates several containers per message and per
task (decoded messages, task records, futures) that reference counting frees on
its own, so most collections find nothing; the ones of the older generations
walk every object the process holds (a big graph's records, in the
controller). Measured on the no-op graph benchmark: the collector took about a
fifth of the controller's and agents' CPU per task.

These processes collect the youngest generation every 50,000 allocations
instead (the older ones as before, every 10 of those), and what their start-up
made (modules, classes, the app) is frozen out of the collections. Cyclic
garbage is still collected, later (a full collection every few seconds of a
busy controller rather than several a second); memory freed by reference
counting, nearly all of it, is freed as before. A user's own process (a graph
client, an experiment script) keeps Python's defaults: shoal does not change
them behind its back.
"""

from __future__ import annotations

import gc

SERVICE_THRESHOLDS = (50_000, 10, 10)


def tune_for_service() -> None:
    """Set the collector up for a long-running shoal process; call once its
    imports and start-up are done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVICE_THRESHOLDS)
