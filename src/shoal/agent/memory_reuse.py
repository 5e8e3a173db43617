"""Freed memory kept for a process's next task, and given back once it is idle.

glibc hands a large freed block back to the system at once: a block over the
mmap threshold is unmapped, and the top of the heap is trimmed once more than
the trim threshold is free there. A task worker that makes a 5 MB object task
after task therefore faults every page of it in again each time (and a task that
reads twenty such inputs, every page of those). On the 2-cpu development VM,
where a page fault costs several microseconds, that was 40 % of the time it took
to make a 5 MB block and write it out.

:class:`MemoryReuse` keeps blocks up to :data:`LARGEST_REUSED` in the heap and
lets up to :data:`KEPT` of free memory stay there while tasks run; the process
calls :meth:`MemoryReuse.give_back` when it has had no work for a moment, so an
idle worker is as small as before. On a small node less is kept (see
:func:`kept_for`): a Raspberry Pi's workers must not hold its memory free.
Where the C library has no ``mallopt`` (musl, macOS) nothing changes.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

# mallopt's parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap, and are reused once freed (glibc's
# ceiling for the mmap threshold on 64-bit systems).
LARGEST_REUSED = 32 * 1024 * 1024
# Free memory the heap may hold while the process works, at most.
KEPT = 256 * 1024 * 1024
# Seconds without work after which a worker gives its free memory back.
IDLE_AFTER = 1.0


def kept_for(memory: int, cpus: int) -> int:
    """Free memory one worker keeps on a machine with ``memory`` bytes and
    ``cpus`` cpus (a worker per cpu): all of them together an eighth of it at
    most, and never more than :data:`KEPT`."""
    return min(KEPT, memory // (8 * max(cpus, 1)))


class MemoryReuse:
    """The C allocator's settings for a process that runs task after task (see
    the module doc). ``dirty``: memory may have been freed since the last
    :meth:`give_back`; the caller sets it when a task ran."""

    def __init__(self) -> None:
        self.dirty = False
        self._trim: Callable[[int], int] | None = None
        try:
            libc = ctypes.CDLL(None)
            mallopt, trim = libc.mallopt, libc.malloc_trim
            # From sysconf, not psutil: importing psutil cost each worker 13 ms.
            memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, AttributeError, ValueError):
            return
        kept = kept_for(memory, os.cpu_count() or 1)
        # mallopt answers 1 when it took the setting; a C library that only
        # pretends to have it answers 0.
        if mallopt(M_MMAP_THRESHOLD, LARGEST_REUSED) and mallopt(M_TRIM_THRESHOLD, kept):
            trim.argtypes = [ctypes.c_size_t]
            self._trim = trim

    @property
    def active(self) -> bool:
        """Whether the allocator took the settings."""
        return self._trim is not None

    def give_back(self) -> None:
        """Return the heap's free memory to the system (the process is idle)."""
        if self._trim is not None and self.dirty:
            self._trim(0)
        self.dirty = False
