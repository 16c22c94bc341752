"""Checkpointing: a thin wrapper over orbax `CheckpointManager` plus a preemption flag.

One checkpoint step directory holds up to four orbax items (`ocp.args.Composite`):

* `state`     the whole training pytree (`StandardSave`): params, batch stats, every optax state
              (namedtuples and int counters included), EMA params, raw PRNG key data (uint32).
* `extra`     a JSON dict (`JsonSave`): what the caller adds, e.g. the final metrics of a phase
              (tuples come back as lists: it is JSON).
* `integrity` a JSON dict written by this module: one 32-bit fingerprint per array leaf.
* `data`      the data-loader position of *every* process: each writes its own
              `process_<i>-of-<n>.json` (grain's orbax handler, the MaxText pattern), and each
              restores its own. Present when `save` is given the loader iterator.

Guarantees (each is covered by `tests/train/test_checkpoint.py`):

* Atomic commit: orbax writes `<dir>/<step>.orbax-checkpoint-tmp*` and renames it to
  `<dir>/<step>` only once every item is written, so a save interrupted by a crash is never
  listed or restored; leftover tmp dirs are deleted when the next `Checkpointer` is created
  (`cleanup_tmp_directories=True`, finished before its first save).
* Retention: the newest `max_to_keep` steps are kept.
* Corruption fallback: `restore(step=None)` tries the newest step first; if reading it fails
  (a truncated/deleted array file, broken metadata) or its arrays do not match the fingerprints
  saved with them (silent bit rot, which tensorstore does not detect by itself), it logs a
  warning naming the step, moves the bad directory aside to `<step>.corrupt-<unix time>` (kept
  for inspection, invisible to orbax, so a resumed run can save that step again) and falls
  back to the next older step.
* Durability: saves are asynchronous (the call returns once arrays are copied to host); after
  `wait()` the checkpoint is committed on disk.
* Several processes: every process calls `save`/`restore` at the same steps (the training loop
  agrees on the step of a SIGTERM save through the step itself, `attngan_jax.train.feed`); orbax
  writes each array once and commits the step when all processes are done.

Usage in a training loop (`attngan_jax.train.loop.run_loop` is the real one)::

    ckpt = Checkpointer(workdir / "ckpt", max_to_keep=3, save_interval_steps=1000)
    flag = install_preemption_handler()
    step = 0
    if ckpt.latest_step() is not None:  # targets carry shardings; the loader is set in place
        state, extra, step = ckpt.restore(jax.eval_shape(init_fn), loader=loader_iter)
    for step in range(step + 1, num_steps + 1):
        state, metrics = train_step(state, next(loader_iter))
        ckpt.save(step, state, force=flag.requested, loader=loader_iter)
        if flag.requested:
            break
    ckpt.close()
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from attngan_jax.errors import InputError
from attngan_jax.runtime import faults, sharding
from attngan_jax.types import PyTree

logger = logging.getLogger(__name__)


class CheckpointsUnreadableError(InputError, RuntimeError):
    """No checkpoint of a directory could be restored."""


_ITEMS = ("state", "extra", "integrity", "data")


# --------------------------------------------------------------------------- fingerprints
def _mix32(h: jax.Array) -> jax.Array:
    """MurmurHash3 32-bit finaliser (avalanche: one flipped input bit flips ~half the bits)."""
    h = h ^ (h >> 16)
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _leaf_fingerprint(x: jax.Array) -> jax.Array:
    """Order-sensitive 32-bit fingerprint of an array's bits: sum_i mix(bits_i ^ i * phi) mod 2^32.

    The sum of uint32 values is exact and associative, so the result does not depend on how the
    array is sharded.
    """
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        bits = x.astype(jnp.uint32)
    else:
        width = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
        bits = jax.lax.bitcast_convert_type(x, width).astype(jnp.uint32)  # 8-byte: (..., 2)
    bits = bits.reshape(-1)  # (N,)
    idx = jnp.arange(bits.shape[0], dtype=jnp.uint32)
    return jnp.sum(_mix32(bits ^ (idx * np.uint32(0x9E3779B9))), dtype=jnp.uint32)


@jax.jit
def _fingerprints(leaves: list[jax.Array]) -> list[jax.Array]:
    return [_leaf_fingerprint(x) for x in leaves]


def _dtype_name(x: Any) -> str | None:
    """Name of the dtype of an array-like leaf `_leaf_fingerprint` handles, else None."""
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return str(x.dtype)
    if isinstance(x, (jax.Array, np.ndarray, np.generic, bool, int, float)):
        dt = np.result_type(x)
        if dt.kind in "biuf" or dt.name == "bfloat16":
            return dt.name
    return None


def fingerprint_tree(tree: PyTree) -> dict[str, dict[str, Any]]:
    """Per-leaf fingerprints of a pytree.

    Args:
      tree: any pytree; array-like leaves (jax/numpy arrays, Python/numpy scalars) are
        fingerprinted, other leaves (strings, None) are skipped.

    Returns:
      `{keystr(path): {"fp": int, "dtype": str, "shape": list[int]}}`.
    """
    flat = [
        (jax.tree_util.keystr(p), x)
        for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
        if _dtype_name(x) is not None
    ]
    fps = sharding.fetch(_fingerprints([jnp.asarray(x) for _, x in flat]))
    return {
        k: {"fp": int(fp), "dtype": _dtype_name(x), "shape": list(np.shape(x))}
        for (k, x), fp in zip(flat, fps)
    }


def _mismatched_leaves(restored: PyTree, saved: dict[str, dict[str, Any]]) -> list[str]:
    """Leaves of `restored` whose fingerprint differs from the saved one (same dtype/shape)."""
    now = fingerprint_tree(restored)
    return [
        k
        for k, v in now.items()
        if k in saved
        and saved[k]["dtype"] == v["dtype"]
        and saved[k]["shape"] == v["shape"]
        and saved[k]["fp"] != v["fp"]
    ]


def _abstract(x: Any) -> Any:
    """Restore target for one leaf: jax arrays become ShapeDtypeStructs with their sharding."""
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    return x


# --------------------------------------------------------------------------- checkpointer
class Checkpointer:
    """Saves and restores (state pytree, JSON extra) pairs under `directory/<step>`.

    Args:
      directory: root directory (created if missing); absolute or relative path.
      max_to_keep: number of newest steps to keep (None keeps all).
      save_interval_steps: `save` writes only when `step % save_interval_steps == 0`
        (or `force=True`).
      async_save: write in a background thread (`wait()` blocks until committed).
      verify: store per-leaf fingerprints and check them on restore.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        max_to_keep: int | None = 3,
        save_interval_steps: int = 1,
        async_save: bool = True,
        verify: bool = True,
    ):
        self.directory = os.path.abspath(os.fspath(directory))
        self.verify = verify
        cm = ocp.checkpoint_managers
        options = ocp.CheckpointManagerOptions(
            # No PreemptionCheckpointingPolicy: the training loop agrees on a SIGTERM's step
            # itself (attngan_jax.train.feed) and saves that step.
            save_decision_policy=cm.FixedIntervalPolicy(save_interval_steps),
            preservation_policy=cm.LatestN(n=max_to_keep),
            cleanup_tmp_directories=True,
            # Several processes save synchronously: grain's per-process loader files are written
            # by a synchronous handler, which raced the primary's asynchronous creation of the
            # item directory (process 1 found no data.orbax-checkpoint-tmp/ to write into).
            enable_async_checkpointing=async_save and jax.process_count() == 1,
            create=True,
        )
        self._mngr = ocp.CheckpointManager(self.directory, item_names=_ITEMS, options=options)
        # Orbax deletes leftover tmp dirs in the background and waits for that before the next
        # save; wait now so the directory is clean when the constructor returns.
        getattr(self._mngr, "_maybe_await_cleanup_tmp_directory", lambda: None)()

    # ---------------------------------------------------------------- queries
    def all_steps(self) -> list[int]:
        """Committed steps, ascending."""
        return sorted(self._mngr.all_steps())

    def latest_step(self) -> int | None:
        """Newest committed step, or None when there is none."""
        return self._mngr.latest_step()

    def has_loader_state(self, step: int) -> bool:
        """Whether ``step`` holds data-loader positions (``save(..., loader=...)``)."""
        return os.path.isdir(os.path.join(self.directory, str(step), "data"))

    # ---------------------------------------------------------------- save
    def save(
        self,
        step: int,
        state: PyTree,
        extra: dict | None = None,
        force: bool = False,
        loader: Any = None,
    ) -> bool:
        """Saves `state` and `extra` at `step` if the interval (or `force`) says so.

        Args:
          step: training step (the directory name).
          state: pytree of jax/numpy arrays and scalars; saved whole.
          extra: JSON-serialisable dict (rng seeds, config, final metrics).
          force: save even when `step` is not a multiple of `save_interval_steps`.
          loader: this process's grain iterator (``iter(DataLoader)``); its position is saved
            per process.

        Returns:
          True when a save was started; False when skipped (off-interval, or `step` already
          saved — orbax never overwrites a committed step).
        """
        if step in self._mngr.all_steps():
            logger.info("checkpoint step %d already exists; not saving again", step)
            return False
        if not force and not self._mngr.should_save(step):
            return False
        integrity = {"leaves": fingerprint_tree(state)} if self.verify else {"leaves": {}}
        items = dict(
            state=ocp.args.StandardSave(state),
            extra=ocp.args.JsonSave(dict(extra or {})),
            integrity=ocp.args.JsonSave(integrity),
        )
        if loader is not None:
            items["data"] = grain.checkpoint.CheckpointSave(loader)
        started = self._mngr.save(step, args=ocp.args.Composite(**items), force=True)
        faults.point(f"checkpoint:{os.path.basename(os.path.dirname(self.directory))}:{step}")
        return started

    # ---------------------------------------------------------------- restore
    def _restore_step(self, target: PyTree, step: int, loader: Any) -> tuple[PyTree, dict]:
        items = dict(
            state=ocp.args.StandardRestore(jax.tree.map(_abstract, target)),
            extra=ocp.args.JsonRestore(),
            integrity=ocp.args.JsonRestore(),
        )
        if loader is not None and self.has_loader_state(step):
            items["data"] = grain.checkpoint.CheckpointRestore(loader)
        out = self._mngr.restore(step, args=ocp.args.Composite(**items))
        if self.verify:
            bad = _mismatched_leaves(out["state"], out["integrity"]["leaves"])
            if bad:
                raise ValueError(f"fingerprint mismatch in {len(bad)} leaves: {bad[:5]}")
        return out["state"], dict(out["extra"])

    def _quarantine(self, step: int) -> None:
        src = os.path.join(self.directory, str(step))
        dst = f"{src}.corrupt-{int(time.time())}"
        sharding.barrier(f"quarantine_{step}_before")  # every process has given up on the step
        if sharding.is_primary() and os.path.isdir(src):
            os.replace(src, dst)
            logger.warning("moved corrupted checkpoint %s to %s", src, dst)
        sharding.barrier(f"quarantine_{step}_after")
        self._mngr.reload()

    def restore(
        self, target: PyTree, step: int | None = None, loader: Any = None
    ) -> tuple[PyTree, dict, int]:
        """Restores a checkpoint into the structure, dtypes and shardings of `target`.

        Args:
          target: pytree like the saved state whose leaves are `jax.ShapeDtypeStruct`s (with
            `.sharding`, e.g. from `jax.eval_shape` + shardings) or concrete arrays (their
            shardings are used); numpy leaves restore as numpy.
          step: a specific step (no fallback: errors propagate), or None for the newest
            readable step, falling back past corrupted ones (see module docstring).
          loader: this process's grain iterator; set to its saved position when the step has
            one (:meth:`has_loader_state`; a step without this process's file is unreadable).

        Returns:
          `(state, extra, step)`.

        Raises:
          FileNotFoundError: no checkpoint exists.
          RuntimeError: every checkpoint failed to restore.
        """
        self.wait()
        if step is not None:
            state, extra = self._restore_step(target, step, loader)
            return state, extra, step
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        failures = []
        for s in reversed(steps):
            try:
                state, extra = self._restore_step(target, s, loader)
            except Exception as e:  # noqa: BLE001  (any read error means "corrupted")
                msg = f"{type(e).__name__}: {str(e)[:300]}"
                logger.warning(
                    "checkpoint step %d in %s is corrupted (%s); falling back to the previous step",
                    s,
                    self.directory,
                    msg,
                )
                failures.append((s, msg))
                self._quarantine(s)
                continue
            return state, extra, s
        raise CheckpointsUnreadableError(
            f"every checkpoint in {self.directory} failed to restore (each was moved aside as "
            f"<step>.corrupt-*): {failures}; delete the directory to start again, or use a new "
            "--workdir"
        )

    # ---------------------------------------------------------------- lifecycle
    def wait(self) -> None:
        """Blocks until pending async saves are committed (re-raises their errors)."""
        self._mngr.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases orbax's resources."""
        self._mngr.wait_until_finished()
        self._mngr.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- preemption
class PreemptionFlag:
    """Set by SIGTERM/SIGINT; the training loop polls `requested`, saves and exits.

    Attributes:
      requested: True once a handled signal arrived.
      signum: the first signal received (None before).
    """

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        # Only sets state: no I/O, no locks (signal handlers may run at any bytecode).
        self.requested = True
        if self.signum is None:
            self.signum = signum
        if signum == signal.SIGINT:
            # A second Ctrl-C kills the process at once (SIG_DFL, not KeyboardInterrupt), even
            # while the main thread is blocked in XLA.
            signal.signal(signal.SIGINT, signal.SIG_DFL)

    def uninstall(self) -> None:
        """Restores the handlers that were installed before."""
        for s, h in self._previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)  # None: set outside Python
        self._previous.clear()


def install_preemption_handler(
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
) -> PreemptionFlag:
    """Installs handlers that only set a flag, for a clean save-and-exit on preemption.

    Must be called from the main thread. The first SIGINT also restores the default SIGINT
    disposition, so a second Ctrl-C terminates the process immediately. Repeated SIGTERMs keep
    the flag set (schedulers follow up with SIGKILL). On multi-host jobs all hosts must agree
    on the step to save at: the flag is only this process's request, and the training loop
    agrees on the step through the step itself (`attngan_jax.train.feed.StopRequest`), not
    through orbax's `PreemptionCheckpointingPolicy`, which `Checkpointer` does not use.

    Args:
      signals: the signals to handle.

    Returns:
      The flag; call `flag.uninstall()` to restore the previous handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("install_preemption_handler must be called from the main thread")
    flag = PreemptionFlag()
    for s in signals:
        flag._previous[s] = signal.signal(s, flag._handler)
    return flag
