"""What a dataflow job runs against: its rounds in, its values out.

:class:`JobRunner` is the :class:`~shoal.dataflow.jobs.JobContext` of one job,
the same in a job host on a node and in an emulation; :class:`GuardedRunner`
is the face a job's ``serve`` sees, where a round that raises is counted and
skipped.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from shoal.dataflow.jobs import BaseJob
from shoal.dataflow.rounds import InputAligner, Key

log = logging.getLogger("shoal.dataflow")

_NO_HEADS = (0,)  # the heads of a round of one input whose value carries none


class JobRunner:
    """The :class:`shoal.dataflow.jobs.JobContext` a job runs against.

    ``outputs``: anything with put(key, value, head)/finish()/close(), one per
    output pipe: the channel pipes of a host, or the in-process pipes of an
    emulation."""

    def __init__(
        self,
        job: BaseJob,
        max_rounds: int | None,
        outputs: list[Any],
        aligner: InputAligner | None = None,
    ) -> None:
        self.job = job
        self.aligner = aligner or InputAligner(job.inputs)
        self.outputs = outputs
        self.in_heads: tuple[Any, ...] = ()
        self.directory = job.directory
        self.max_rounds = max_rounds
        self.rounds_done = 0
        self.errors = 0
        self._stop = threading.Event()
        self._stopped = False  # the event's flag, read once per value without a call
        self._epoch = 0
        self._counter = 0
        self._key: Key = (0, 0)
        self._lock = threading.Lock()
        self._output_counters = [0] * len(self.job.outputs)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stopped = True
        self._stop.set()
        self.aligner.stop()

    def reset(self, epoch: int) -> None:
        """Start numbering source values again in a new epoch (after a failover)."""
        with self._lock:
            if epoch > self._epoch:
                self._epoch = epoch
                self._counter = 0
                self._output_counters = [0] * len(self.job.outputs)

    def rounds(self) -> Iterator[tuple[Any, ...]]:
        # One generator, not one delegating to another: a frame less per round.
        if self.aligner.plain is not None:
            return self._plain_rounds()
        return self._aligned_rounds()

    def _aligned_rounds(self) -> Iterator[tuple[Any, ...]]:
        own_keys = all(p.OPTIONAL for p in self.job.inputs)
        while not self._stop.is_set():
            found = self.aligner.next_rounds_with_heads()
            if not found:
                return
            for key, values, heads in found:
                # A job fed by optional inputs only numbers its rounds itself, like a source.
                self._key = self._next_source_key() if own_keys else key
                self.in_heads = heads
                yield values
                self.rounds_done += 1
                if self._stop.is_set():
                    return

    def _plain_rounds(self) -> Iterator[tuple[Any, ...]]:
        """The rounds of one plain input: each value as it came, no alignment to do."""
        take = self.aligner.next_segments
        while not self._stopped:
            segments = take()
            if not segments:
                return
            for epoch, first, values, heads in segments:
                self.in_heads = _NO_HEADS
                for index, value in enumerate(values, first):
                    self._key = (epoch, index)
                    if heads is not None:
                        self.in_heads = (heads[index - first],)
                    yield (value,)
                    self.rounds_done += 1
                    if self._stopped:
                        return

    def _next_source_key(self) -> Key:
        # No lock: only the job's thread numbers, and a reset landing mid-way
        # at worst starts the new epoch one value late.
        key = (self._epoch, self._counter)
        self._counter += 1
        return key

    def failed(self) -> None:
        """Count a round whose ``run`` raised (the job prints why)."""
        self.errors += 1

    def emit(self, result: Any, heads: list[int] | None = None) -> None:
        if result is None or not self.outputs:
            return
        if len(self.outputs) == 1 and not isinstance(result, tuple):
            self.outputs[0].put(self._key, result, heads[0] if heads else 0)
            return
        if isinstance(result, tuple):
            if len(result) != len(self.outputs):
                raise ValueError(
                    f"job {self.job.name} returned a tuple of {len(result)} values "
                    f"for {len(self.outputs)} outputs"
                )
            values: Iterable[Any] = result
        else:
            values = [result] * len(self.outputs)
        for index, (out, value) in enumerate(zip(self.outputs, values, strict=True)):
            out.put(self._key, value, heads[index] if heads else 0)

    def emit_to(self, index: int, value: Any, head: int = 0) -> None:
        with self._lock:
            key = (self._epoch, self._output_counters[index])
            self._output_counters[index] += 1
        self.outputs[index].put(key, value, head)

    def produce(
        self, values: Iterable[Any], heads: Callable[[], list[int] | None] | None = None
    ) -> None:
        iterator = iter(values)
        limit, job = self.max_rounds, self.job
        if len(self.outputs) == 1 and heads is None and limit is None:
            self._produce_plain(iterator)
            return
        # One output and no heads (the common source): a value goes straight to
        # its pipe, without the calls emit() makes to find where it goes.
        put = self.outputs[0].put if len(self.outputs) == 1 and heads is None else None
        while not self._stopped:
            if limit is not None and self.rounds_done >= limit:
                return
            try:
                value = next(iterator)
            except StopIteration:
                return
            except Exception:
                self.errors += 1
                log.error("job %s failed:\n%s", self.job.name, traceback.format_exc())
                return
            if value is None:
                return  # a FISSION source ends so
            if put is not None and not isinstance(value, tuple):
                # _next_source_key, inline: this runs once per value of a source.
                key = (self._epoch, self._counter)
                self._counter += 1
                try:
                    put(key, value)
                except (TypeError, ValueError) as exc:
                    self.errors += 1
                    print(f"job {self.job.name}: {exc}", file=sys.stderr)
            else:
                self._key = self._next_source_key()
                self._emit_guarded(value, heads() if heads is not None else None)
            self.rounds_done += 1
            if job.finished:
                return

    def _produce_plain(self, iterator: Iterator[Any]) -> None:
        """``produce`` for the common source (one output, no heads, no round
        limit): each value goes straight to its pipe, numbered here. The
        source's throughput is this loop's, so its counters are locals, kept in
        step with the runner's (a failover's reset starts a new epoch at once)."""
        if self._stopped:
            return
        put, job = self.outputs[0].put, self.job
        epoch, counter = self._epoch, self._counter
        done = self.rounds_done
        try:
            for value in iterator:
                if value is None:
                    return  # a FISSION source ends so
                if self._epoch != epoch:
                    with self._lock:
                        epoch, counter = self._epoch, self._counter
                if isinstance(value, tuple):
                    # One value per output, as emit() sends it.
                    self._counter = counter
                    self._key = self._next_source_key()
                    self._emit_guarded(value)
                    counter = self._counter
                else:
                    try:
                        put((epoch, counter), value)
                    except (TypeError, ValueError) as exc:
                        self.errors += 1
                        print(f"job {job.name}: {exc}", file=sys.stderr)
                    counter += 1
                done += 1
                self.rounds_done = done
                if job.finished or self._stopped:
                    return
        except Exception:
            self.errors += 1
            log.error("job %s failed:\n%s", job.name, traceback.format_exc())
        finally:
            with self._lock:
                if self._epoch == epoch:
                    self._counter = counter

    def _emit_guarded(self, value: Any, heads: list[int] | None = None) -> None:
        try:
            self.emit(value, heads)
        except (TypeError, ValueError) as exc:
            self.errors += 1
            print(f"job {self.job.name}: {exc}", file=sys.stderr)


class GuardedRunner:
    """The runner as the job sees it: a round whose ``run`` raises is reported and skipped."""

    def __init__(self, runner: JobRunner) -> None:
        self._runner = runner
        self.directory = runner.directory

    @property
    def stopping(self) -> bool:
        return self._runner.stopping

    def rounds(self) -> Iterator[tuple[Any, ...]]:
        return self._runner.rounds()

    @property
    def in_heads(self) -> tuple[Any, ...]:
        return self._runner.in_heads

    def failed(self) -> None:
        self._runner.failed()

    def emit(self, result: Any, heads: list[int] | None = None) -> None:
        self._runner._emit_guarded(result, heads)

    def emit_to(self, index: int, value: Any, head: int = 0) -> None:
        self._runner.emit_to(index, value, head)

    def produce(
        self, values: Iterable[Any], heads: Callable[[], list[int] | None] | None = None
    ) -> None:
        self._runner.produce(values, heads)
