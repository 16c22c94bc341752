"""What enters each training step besides the state: the batch and the agreed stop request.

:class:`Batches` turns the loader's host batches into global arrays with a ``_stop`` field (the
signal this process received); :func:`with_stop_request` makes the step return the maximum of that
field over the global batch, so :class:`StopRequest` gives every process the same answer to "stop
after this step?". :class:`ExampleTrace` records each step's record indices (tests).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from attngan_jax.runtime import sharding

_STOP = "_stop"  # the batch field / metric that carries a stop request between processes


def with_stop_request(step_fn: Callable) -> Callable:
    """Wraps a step so that a stop request on any process reaches every process.

    Each process puts the signal number it received (0: none) into every row of its block of
    ``batch["_stop"]``; the step returns the maximum over the global batch, replicated, as
    ``metrics["_stop"]``. So all processes read the same value after the same step, and save and
    stop together (a SIGTERM to one host only, or to all at different steps, cannot hang them).
    """

    def step(state, batch):
        batch = dict(batch)
        stop = batch.pop(_STOP)  # (B,) int32
        state, metrics = step_fn(state, batch)
        return state, {**metrics, _STOP: jnp.max(stop)}

    return step


class StopRequest:
    """The SIGTERM/SIGINT flag, and the stop every process agrees on (:func:`with_stop_request`)."""

    def __init__(self, flag):
        self.flag = flag
        self.multi = jax.process_count() > 1
        self.latest = None  # this step's agreed value
        self.pending = None  # the previous step's (several processes)

    def signal(self) -> int:
        """The signal this process received (0: none), for the next step's batch."""
        return self.flag.signum or 0

    def take(self, metrics: dict) -> None:
        """Pops this step's agreed value (``metrics["_stop"]``, still on the devices)."""
        self.latest = metrics.pop(_STOP)

    def agreed(self) -> int:
        """The signal to stop with after this step (0: go on), the same on every process."""
        if not self.multi:  # one process: stop at once
            return (self.flag.signum or signal.SIGTERM) if self.flag.requested else 0
        # One step late, so the host never waits for the step it has just dispatched: every
        # process reads the same agreed value of the previous step and stops at this one.
        stop = int(sharding.fetch(self.pending)) if self.pending is not None else 0
        self.pending = self.latest
        return stop

    def uninstall(self) -> None:
        """Restores the signal handlers that were there before."""
        self.flag.uninstall()


class Batches:
    """The loader's host batches as global arrays, with the stop field and the example trace.

    :meth:`peek` reads the first batch early (the ahead-of-time compile needs its shapes); after
    a restore moved the iterator to a saved position (:meth:`moved`) the peeked batch is dropped.
    """

    def __init__(self, loader, mesh, trace: ExampleTrace):
        self.iterator = iter(loader)
        self.mesh, self.trace = mesh, trace
        self._first: dict | None = None

    def _global(self, host: dict, stop: int = 0) -> dict:
        rows = len(host["index"])
        return sharding.to_global({**host, _STOP: np.full((rows,), stop, np.int32)}, self.mesh)

    def peek(self) -> dict:
        """The next batch (global arrays), kept for :meth:`next`."""
        if self._first is None:
            self._first = next(self.iterator)
        return self._global(self._first)

    def moved(self) -> None:
        """The iterator was set to a saved position: the peeked batch is not the next one."""
        self._first = None

    def next(self, step: int, stop: int) -> dict:
        """Step ``step``'s batch with this process's stop request in its ``_stop`` rows."""
        host = self._first if self._first is not None else next(self.iterator)
        self._first = None
        self.trace.write(step, host)
        return self._global(host, stop)

    def close(self) -> None:
        """Closes the trace file."""
        self.trace.close()


class ExampleTrace:
    """Appends the record indices of each step's block to ``examples/process_<i>-of-<n>.jsonl``."""

    def __init__(self, workdir: str, enabled: bool):
        self._file = None
        if enabled:
            d = os.path.join(workdir, "examples")
            os.makedirs(d, exist_ok=True)
            name = f"process_{jax.process_index()}-of-{jax.process_count()}.jsonl"
            self._file = open(os.path.join(d, name), "a")  # noqa: SIM115  (closed in close())

    def write(self, step: int, host_batch: dict) -> None:
        """One line: the step and this process's record indices."""
        if self._file is not None:
            self._file.write(json.dumps({"step": step, "index": host_batch["index"].tolist()}))
            self._file.write("\n")
            self._file.flush()

    def close(self) -> None:
        """Closes the file."""
        if self._file is not None:
            self._file.close()
