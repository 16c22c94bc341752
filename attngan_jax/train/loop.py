"""The training loop every phase runs: ``state, metrics = step(state, batch)`` to a step count.

:func:`run_loop` owns what is common to DAMSM and GAN training: the state initialised straight into
its sharding, the step compiled ahead of time, orbax checkpoints of the state and of each process's
loader position (resume continues exactly), a stop request (SIGTERM/SIGINT on any process) agreed
through the step so that every process saves the same step, TensorBoard scalars on logging steps
(the only steps whose metrics reach the host), non-finite losses stopping the run, and a progress bar.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from clu import parameter_overview

from attngan_jax.runtime import faults, sharding
from attngan_jax.runtime.host_memory import release_freed_host_memory
from attngan_jax.runtime.observe import MetricWriter, check_finite, progress
from attngan_jax.train.checkpoint import Checkpointer, install_preemption_handler

log = logging.getLogger(__name__)


class Preempted(RuntimeError):
    """Raised after a SIGTERM/SIGINT checkpoint so the caller stops without an export.

    Attributes:
        signum: the signal that asked to stop (``train.py`` exits with ``128 + signum``, the
            shell's status for a process ended by that signal).
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def _loader_state_from_json(state: Any) -> Any:
    return state.encode() if isinstance(state, str) else state


_STOP = "_stop"  # the batch field / metric that carries a stop request between processes


def _with_stop_request(step_fn: Callable) -> Callable:
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


class _ExampleTrace:
    """Appends the record indices of each step's block to ``examples/process_<i>-of-<n>.jsonl``."""

    def __init__(self, workdir: str, enabled: bool):
        self._file = None
        if enabled:
            d = os.path.join(workdir, "examples")
            os.makedirs(d, exist_ok=True)
            name = f"process_{jax.process_index()}-of-{jax.process_count()}.jsonl"
            self._file = open(os.path.join(d, name), "a")  # noqa: SIM115  (closed in close())

    def write(self, step: int, host_batch: dict) -> None:
        if self._file is not None:
            self._file.write(json.dumps({"step": step, "index": host_batch["index"].tolist()}))
            self._file.write("\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class _AotStep:
    """A jitted step compiled ahead of time, then the compiler's freed memory released.

    ``compile`` takes the arguments' shapes (``jax.ShapeDtypeStruct`` with shardings, or arrays),
    so the step can be built before its state exists; otherwise the first call compiles. Calls
    the compiled executable; if a call's arguments do not match the ones it was compiled for
    (shapes, dtypes or shardings), warns and falls back to the jitted function, which compiles
    what it needs.
    """

    def __init__(self, jitted: Callable):
        self._jitted = jitted
        self._compiled = None

    def compile(self, *args) -> None:
        """Compiles for ``args`` (arrays or ``jax.ShapeDtypeStruct``s)."""
        self._compiled = self._jitted.lower(*args).compile()
        release_freed_host_memory()  # the compiler's freed heap, before the step's buffers
        sharding.barrier("step_compiled")  # see sharding.call_in_lockstep

    def __call__(self, *args):
        if self._compiled is None:
            self.compile(*args)
        if self._compiled is not False:
            try:
                return self._compiled(*args)
            except (TypeError, ValueError) as e:
                log.warning("step inputs differ from the compiled ones (%s); compiling again", e)
                self._compiled = False
        return self._jitted(*args)


def run_loop(
    *,
    name: str,
    workdir: str,
    config: mlc.ConfigDict,
    mesh,
    init_fn: Callable[..., Any],
    step_fn: Callable,
    loader,
    total_steps: int,
    hooks: list[Callable[[int, Any, dict], None]] = (),
    on_epoch: Callable[[int, Any], Any] | None = None,
    steps_per_epoch: int = 0,
    batch_size: int = 1,
    init_args: Callable[[], tuple] = tuple,
    parameters: Callable[[Any], dict] | None = None,
) -> tuple[Any, dict[str, float]]:
    """Runs ``state, metrics = step_fn(state, batch)`` from the last checkpoint to ``total_steps``.

    Args:
        name: phase name (progress bar and logs).
        workdir: the phase's directory (``checkpoints/``, ``tensorboard/``).
        config: the experiment config.
        mesh: device mesh.
        init_fn: ``(*init_args()) -> state`` (jitted with replicated outputs; never materialised on
            one device first).
        step_fn: the pure step.
        loader: the grain loader of the training split.
        total_steps: where to stop.
        hooks: ``hook(step, state, metrics)`` called after every step on every process
            (``metrics``: those of the last logging step).
        on_epoch: ``state = on_epoch(epoch, state)`` at epoch boundaries (e.g. optimizer reset).
        steps_per_epoch: for ``on_epoch``.
        batch_size: global batch size (examples/s).
        init_args: ``() -> arguments of init_fn``: weights read from files (pretrained trunk,
            frozen encoders), passed as donated arguments rather than closed over, which would
            embed them in the compiled initialiser as constants. Called once for the abstract
            state and once more when no checkpoint is restored; nothing holds the result after.
        parameters: ``state -> {network name: parameters}``; their overview (name, shape, size of
            every leaf: ``clu.parameter_overview``) is logged and written to
            ``workdir/parameters.txt`` when the phase starts.

    Returns:
        ``(final state, last host metrics)``.

    Raises:
        Preempted: a SIGTERM/SIGINT arrived (on any process); a checkpoint was written at the
            step all processes agreed on.
        attngan_jax.runtime.observe.NonFiniteLossError: a loss became NaN/inf (checked on logging steps).
    """
    repl = sharding.replicated(mesh)
    abstract = jax.eval_shape(lambda: init_fn(*init_args()))
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), abstract
    )
    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints"),
        max_to_keep=config.keep_checkpoints,
        save_interval_steps=config.checkpoint_every,
    )
    multi = jax.process_count() > 1
    it = iter(loader)
    trace = _ExampleTrace(workdir, config.trace_examples)

    def to_device(host: dict, stop: int = 0) -> dict:
        rows = len(host["index"])
        return sharding.to_global({**host, _STOP: np.full((rows,), stop, np.int32)}, mesh)

    train_step = _AotStep(jax.jit(_with_stop_request(step_fn), donate_argnums=(0,)))
    first = None  # the fresh iterator's first batch, until a restored loader position replaces it
    if (ckpt.latest_step() or 0) < total_steps:
        # Compile from the abstract state before any state exists: XLA's working memory (large
        # for the birds steps on CPU) then peaks on a small heap, not on top of the state.
        first = next(it)
        train_step.compile(target, to_device(first))
    start = 0
    host_metrics: dict[str, float] = {}
    if ckpt.latest_step() is not None:
        state, extra, start = ckpt.restore(target, loader=it)
        if ckpt.has_loader_state(start):
            first = None
        elif extra.get("data") is not None:  # checkpoints written before the per-process item
            it.set_state(_loader_state_from_json(extra["data"]))
            first = None
        host_metrics = dict(extra.get("metrics") or {})  # the finished run's last figures
        log.info("%s: resumed from step %d in %s", name, start, workdir)
    else:
        args = sharding.put_leafwise(init_args, repl)  # host copies freed leaf by leaf
        donate = tuple(range(len(args)))
        # Jitted through a fresh function: JAX's trace and executable caches are keyed on the
        # function, and ``init_fn`` lives as long as this loop, so jitting it directly would keep
        # the initialiser's trace and executable in memory through training (a sizeable fraction
        # of the state's own size for the birds GANs).
        state = jax.jit(lambda *a: init_fn(*a), out_shardings=repl, donate_argnums=donate)(*args)
        del args
    release_freed_host_memory()  # what the initialiser's compile or the restore freed
    if parameters is not None:
        _write_parameter_overview(name, workdir, parameters(state))
    writer = MetricWriter(os.path.join(workdir, "tensorboard"))
    flag = install_preemption_handler()
    t_last, n_last = time.time(), start
    pending_stop = None  # the previous step's agreed stop request (multi-process)
    bar = progress(total_steps, initial=start, desc=name)
    try:
        for step in range(start, total_steps):
            if on_epoch is not None and steps_per_epoch and step % steps_per_epoch == 0 and step:
                state = on_epoch(step // steps_per_epoch, state)
            host = first if first is not None else next(it)
            first = None
            trace.write(step + 1, host)
            state, metrics = train_step(state, to_device(host, flag.signum or 0))
            done = step + 1
            faults.point(f"step:{os.path.basename(workdir)}:{done}")
            if multi:
                # One step late, so the host never waits for the step it has just dispatched:
                # every process reads the same agreed value of step done - 1 and stops at done.
                stop = int(sharding.fetch(pending_stop)) if pending_stop is not None else 0
                pending_stop = metrics.pop(_STOP)
            else:
                metrics.pop(_STOP)
            bar.update(1)
            if done % config.log_every == 0 or done == total_steps:
                # Metrics reach the host only on logging steps: a copy every step would make the
                # host wait for each step before dispatching the next.
                host_metrics = {k: float(v) for k, v in sharding.fetch(metrics).items()}
                check_finite(host_metrics, done)
                now = time.time()
                host_metrics["examples_per_s"] = (
                    (done - n_last) * batch_size / max(now - t_last, 1e-9)
                )
                t_last, n_last = now, done
                writer.write_scalars(done, host_metrics)
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(host_metrics.items())[:4]})
            for hook in hooks:
                hook(done, state, host_metrics)
            if not multi:  # one process: stop at once
                stop = (flag.signum or signal.SIGTERM) if flag.requested else 0
            extra = {"metrics": host_metrics} if done == total_steps else {}
            if stop:
                ckpt.save(done, state, extra, force=True, loader=it)
                ckpt.wait()
                raise Preempted(
                    f"{name}: stopped by signal {stop} at step {done}; resume "
                    f"with the same --workdir",
                    stop,
                )
            ckpt.save(done, state, extra, force=done == total_steps, loader=it)
    finally:
        bar.close()  # before a Preempted/error message, not redrawn after it at exit
        ckpt.close()
        writer.flush()
        flag.uninstall()
        trace.close()
    writer.close()
    return state, host_metrics


def _write_parameter_overview(name: str, workdir: str, params: dict) -> None:
    """Logs the networks' parameter table and writes it to ``workdir/parameters.txt`` (primary)."""
    text = "\n".join(
        f"{net}: {parameter_overview.count_parameters(p):,} parameters\n"
        + parameter_overview.get_parameter_overview(p, include_stats=False)
        for net, p in params.items()
    )
    log.info("%s networks:\n%s", name, text)
    if sharding.is_primary():
        path = os.path.join(workdir, "parameters.txt")
        with open(path + ".tmp", "w") as f:
            f.write(text + "\n")
        os.replace(path + ".tmp", path)
