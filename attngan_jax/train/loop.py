"""The training loop every phase runs: ``state, metrics = step(state, batch)`` to a step count.

:func:`run_loop` is :func:`restore_or_init` followed by a plain loop (big_vision's
``train.py`` shape). After each step the periodic actions run, each on one line guarded by
:func:`itstime` (log, every :class:`Periodic` action the phase passes: sample grid, evaluators;
then checkpoint), so the last step is handled in one place: ``itstime`` is true there for every
action. What the loop owns beside that: the state initialised straight into its sharding, the
step compiled ahead of time, orbax checkpoints of the state and of each process's loader position
(resume continues exactly), a stop request (SIGTERM/SIGINT on any process) agreed through the
step so that every process saves the same step, TensorBoard scalars on logging steps (the only
steps whose metrics reach the host), non-finite losses stopping the run, and a progress bar.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
from clu import parameter_overview

from attngan_jax.runtime import atomic, faults, sharding
from attngan_jax.runtime.host_memory import release_freed_host_memory
from attngan_jax.runtime.observe import MetricWriter, check_finite, progress
from attngan_jax.train import feed
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


def itstime(step: int, every: int, total: int, last: bool = True) -> bool:
    """Whether an action with interval ``every`` runs after ``step`` steps of ``total``.

    Args:
        step: steps done (1-based: the step just finished).
        every: the action's interval; 0 runs it only at the last step (with ``last``).
        total: the phase's last step.
        last: also run at ``step == total`` (every action the loop knows does).
    """
    return (every > 0 and step % every == 0) or (last and step == total)


@dataclasses.dataclass(frozen=True)
class Periodic:
    """An action the loop runs after every ``every`` steps and after the last one.

    Attributes:
        name: for logs.
        every: interval in steps (0: at the last step only).
        run: ``run(step, state, writer)``; called on every process (collectives allowed), in
            lockstep; ``writer`` is the phase's TensorBoard writer (a no-op off the primary).
    """

    name: str
    every: int
    run: Callable[[int, Any, MetricWriter], None]


@dataclasses.dataclass(frozen=True)
class Intervals:
    """The loop's own intervals, in steps (each also runs at the last step).

    Attributes:
        log: host metrics, TensorBoard scalars, the non-finite guard.
        checkpoint: orbax checkpoints (and on a stop request).
        keep_checkpoints: newest checkpoints kept.
    """

    log: int
    checkpoint: int
    keep_checkpoints: int = 3


@dataclasses.dataclass(frozen=True)
class Program:
    """What a phase trains: its state's initialiser and its step.

    Attributes:
        init_fn: ``(*init_args()) -> state`` (jitted with replicated outputs; never materialised
            on one device first).
        step_fn: the pure step ``(state, batch) -> (state, metrics)``.
        init_args: ``() -> arguments of init_fn``: weights read from files (pretrained trunk,
            frozen encoders), passed as donated arguments rather than closed over, which would
            embed them in the compiled initialiser as constants. Called once for the abstract
            state and once more when no checkpoint is restored; nothing holds the result after.
        on_epoch: ``state = on_epoch(epoch, state)`` at epoch boundaries (e.g. optimizer reset).
        steps_per_epoch: for ``on_epoch``.
        parameters: ``state -> {network name: parameters}``; their overview (name, shape, size of
            every leaf: ``clu.parameter_overview``) is logged and written to
            ``workdir/parameters.txt`` when the phase starts.
    """

    init_fn: Callable[..., Any]
    step_fn: Callable
    init_args: Callable[[], tuple] = tuple
    on_epoch: Callable[[int, Any], Any] | None = None
    steps_per_epoch: int = 0
    parameters: Callable[[Any], dict] | None = None


def run_loop(
    *,
    name: str,
    workdir: str,
    mesh,
    program: Program,
    loader,
    total_steps: int,
    every: Intervals,
    actions: Sequence[Periodic] = (),
    batch_size: int = 1,
    trace_examples: bool = False,
) -> tuple[Any, dict[str, float]]:
    """Runs ``program`` from the last checkpoint in ``workdir`` to ``total_steps``.

    Args:
        name: phase name (progress bar and logs).
        workdir: the phase's directory (``checkpoints/``, ``tensorboard/``).
        mesh: device mesh.
        program: the initialiser and the step.
        loader: the grain loader of the training split.
        total_steps: where to stop.
        every: the intervals of logging and checkpoints.
        actions: the phase's periodic actions, run in this order after logging and before the
            checkpoint of a step (so a checkpoint at step ``s`` means they ran at ``s``).
        batch_size: global batch size (examples/s).
        trace_examples: append each step's record indices to ``workdir/examples/`` (tests).

    Returns:
        ``(final state, last host metrics)``.

    Raises:
        Preempted: a SIGTERM/SIGINT arrived (on any process); a checkpoint was written at the
            step all processes agreed on.
        attngan_jax.runtime.observe.NonFiniteLossError: a loss became NaN/inf (checked on logging
            steps).
    """
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=every.keep_checkpoints)
    batches = feed.Batches(loader, mesh, feed.ExampleTrace(workdir, trace_examples))
    train_step = _AotStep(jax.jit(feed.with_stop_request(program.step_fn), donate_argnums=(0,)))
    target = _abstract_state(program, mesh)
    if (ckpt.latest_step() or 0) < total_steps:
        # Compile from the abstract state before any state exists: XLA's working memory (large
        # for the birds steps on CPU) then peaks on a small heap, not on top of the state.
        train_step.compile(target, batches.peek())
    state, start, host_metrics = restore_or_init(ckpt, target, program, mesh, batches)
    if program.parameters is not None:
        _write_parameter_overview(name, workdir, program.parameters(state))
    writer = MetricWriter(os.path.join(workdir, "tensorboard"))
    stop = feed.StopRequest(install_preemption_handler())
    bar = progress(total_steps, initial=start, desc=name)
    logger = _Logger(writer, bar, start, batch_size)
    try:
        for step in range(start + 1, total_steps + 1):  # ``step``: steps done after this one
            state = _new_epoch(program, step - 1, state)
            state, metrics = train_step(state, batches.next(step, stop.signal()))
            faults.point(f"step:{os.path.basename(workdir)}:{step}")
            stop.take(metrics)
            bar.update(1)
            if itstime(step, every.log, total_steps):
                host_metrics = logger(step, metrics)
            for action in actions:
                if itstime(step, action.every, total_steps):
                    action.run(step, state, writer)
            extra = {"metrics": host_metrics} if step == total_steps else {}
            if signum := stop.agreed():
                _save_and_stop(ckpt, step, state, extra, batches, name, signum)
            if itstime(step, every.checkpoint, total_steps):
                ckpt.save(step, state, extra, loader=batches.iterator)
    finally:
        bar.close()  # before a Preempted/error message, not redrawn after it at exit
        ckpt.close()
        writer.flush()
        stop.uninstall()
        batches.close()
    writer.close()
    return state, host_metrics


def restore_or_init(
    ckpt: Checkpointer, target: Any, program: Program, mesh, batches: feed.Batches
) -> tuple[Any, int, dict[str, float]]:
    """The newest readable checkpoint (state and loader position), else a fresh state.

    Returns:
        ``(state, steps done, host metrics of the finished run or {})``.
    """
    if ckpt.latest_step() is not None:
        state, extra, start = ckpt.restore(target, loader=batches.iterator)
        if ckpt.has_loader_state(start):
            batches.moved()
        log.info("resumed from step %d in %s", start, ckpt.directory)
        release_freed_host_memory()  # what the restore freed
        return state, start, dict(extra.get("metrics") or {})  # the finished run's last figures
    repl = sharding.replicated(mesh)
    args = sharding.put_leafwise(program.init_args, repl)  # host copies freed leaf by leaf
    donate = tuple(range(len(args)))
    # Jitted through a fresh function: JAX's trace and executable caches are keyed on the
    # function, and ``init_fn`` lives as long as this loop, so jitting it directly would keep the
    # initialiser's trace and executable in memory through training (a sizeable fraction of the
    # state's own size for the birds GANs).
    init = program.init_fn
    state = jax.jit(lambda *a: init(*a), out_shardings=repl, donate_argnums=donate)(*args)
    del args
    release_freed_host_memory()  # what the initialiser's compile freed
    return state, 0, {}


# ----------------------------------------------------------------------------- loop helpers
def _abstract_state(program: Program, mesh) -> Any:
    """The state's shapes with the replicated sharding: the restore and compile target."""
    repl = sharding.replicated(mesh)
    abstract = jax.eval_shape(lambda: program.init_fn(*program.init_args()))
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), abstract
    )


def _new_epoch(program: Program, done: int, state: Any) -> Any:
    """``program.on_epoch`` when ``done`` (> 0) steps complete an epoch."""
    spe = program.steps_per_epoch
    if program.on_epoch is not None and spe and done and done % spe == 0:
        state = program.on_epoch(done // spe, state)
    return state


def _save_and_stop(ckpt, step: int, state, extra: dict, batches, name: str, signum: int) -> None:
    """Saves ``step`` (every process agreed on it) and raises :class:`Preempted`."""
    ckpt.save(step, state, extra, loader=batches.iterator)
    ckpt.wait()
    raise Preempted(
        f"{name}: stopped by signal {signum} at step {step}; resume with the same --workdir", signum
    )


class _Logger:
    """Logging steps: host metrics (the only copy to the host), guard, examples/s, TensorBoard."""

    def __init__(self, writer: MetricWriter, bar, start: int, batch_size: int):
        self.writer, self.bar, self.batch_size = writer, bar, batch_size
        self.t_last, self.n_last = time.time(), start

    def __call__(self, step: int, metrics: dict) -> dict[str, float]:
        # Metrics reach the host only on logging steps: a copy every step would make the host
        # wait for each step before dispatching the next.
        host = {k: float(v) for k, v in sharding.fetch(metrics).items()}
        check_finite(host, step)
        now = time.time()
        host["examples_per_s"] = (
            (step - self.n_last) * self.batch_size / max(now - self.t_last, 1e-9)
        )
        self.t_last, self.n_last = now, step
        self.writer.write_scalars(step, host)
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in list(host.items())[:4]})
        return host


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


def _write_parameter_overview(name: str, workdir: str, params: dict) -> None:
    """Logs the networks' parameter table and writes it to ``workdir/parameters.txt`` (primary)."""
    text = "\n".join(
        f"{net}: {parameter_overview.count_parameters(p):,} parameters\n"
        + parameter_overview.get_parameter_overview(p, include_stats=False)
        for net, p in params.items()
    )
    log.info("%s networks:\n%s", name, text)
    if sharding.is_primary():
        atomic.write_text(os.path.join(workdir, "parameters.txt"), text + "\n")
