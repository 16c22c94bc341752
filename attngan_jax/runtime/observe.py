"""Observability: TensorBoard event files, a progress bar, and a non-finite-loss guard.

Typical use in a training loop::

    writer = MetricWriter(workdir / "tb")
    bar = progress(num_steps, initial=start_step, desc="train")
    for step in range(start_step + 1, num_steps + 1):
        state, metrics = train_step(state, batch)
        if step % log_every == 0:
            metrics = jax.device_get(metrics)
            check_finite(metrics, step)
            writer.write_scalars(step, metrics)
        bar.update(1)
    bar.close(); writer.close()
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import tqdm
from tensorboardX import SummaryWriter


class MetricWriter:
    """Scalars and images to TensorBoard event files, written by process 0 only.

    On other processes every method is a no-op, so the training loop calls it unconditionally.

    Args:
      logdir: directory for the event files (created if missing).
      flush_secs: how often tensorboardX flushes pending events by itself.
    """

    def __init__(self, logdir: str | os.PathLike, flush_secs: int = 30):
        self.logdir = os.fspath(logdir)
        self._writer = None
        if jax.process_index() == 0:
            self._writer = SummaryWriter(logdir=self.logdir, flush_secs=flush_secs)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Writes one scalar per key.

        Args:
          step: global step.
          scalars: name -> Python number, numpy scalar or size-1 (jax) array.
        """
        if self._writer is None:
            return
        for name, value in scalars.items():
            self._writer.add_scalar(name, float(np.asarray(value).reshape(())), global_step=step)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Writes one PNG-encoded image per key.

        Args:
          step: global step.
          images: name -> uint8 array (H, W, 3) or (H, W, 1) (e.g. `visualize.super_image`).
        """
        if self._writer is None:
            return
        for name, img in images.items():
            img = np.asarray(img)
            if img.dtype != np.uint8 or img.ndim != 3:
                raise ValueError(f"image {name!r}: expected uint8 HWC, got {img.dtype} {img.shape}")
            self._writer.add_image(name, img, global_step=step, dataformats="HWC")

    def flush(self) -> None:
        """Writes pending events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(total: int, initial: int = 0, desc: str | None = None, file=None) -> tqdm.tqdm:
    """A tqdm bar over training steps showing steps/s and the ETA.

    It stays enabled when stdout is not a terminal (log files, batch jobs) but then refreshes at
    most every 30 s, so logs get a line per 30 s rather than per step. Disabled on processes
    other than 0.

    Args:
      total: the last step (e.g. `num_steps`).
      initial: the step the run resumes from (the rate counts only steps done in this run).
      desc: prefix shown before the bar.
      file: stream to write to (default `sys.stderr`).

    Returns:
      A `tqdm.tqdm`; call `.update(n)`, `.set_postfix(...)` and `.close()`.
    """
    file = sys.stderr if file is None else file
    is_tty = hasattr(file, "isatty") and file.isatty()
    return tqdm.tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        file=file,
        dynamic_ncols=is_tty,
        mininterval=0.5 if is_tty else 30.0,
        smoothing=0.1,
        disable=jax.process_index() != 0,
    )


class NonFiniteLossError(FloatingPointError):
    """A loss or metric became NaN or infinite.

    Attributes:
      step: the training step.
      names: the non-finite metric names.
    """

    def __init__(self, step: int, bad: Mapping[str, Any]):
        self.step = step
        self.names = list(bad)
        detail = ", ".join(f"{k}={v}" for k, v in bad.items())
        super().__init__(f"non-finite loss at step {step}: {detail}")


def check_finite(metrics: Mapping[str, Any], step: int) -> None:
    """Raises if any metric is NaN or +-inf.

    Fetches the values to the host (a sync point: call it at the logging interval, on the
    metrics you log anyway).

    Args:
      metrics: name -> scalar or array (jax or numpy); nested dicts are flattened to "a/b".
      step: the training step, for the message.

    Raises:
      NonFiniteLossError: naming the step and every non-finite metric with its value.
    """
    flat = {
        "/".join(str(getattr(k, "key", k)) for k in path): v
        for path, v in jax.tree_util.tree_flatten_with_path(jax.device_get(dict(metrics)))[0]
    }
    bad = {}
    for name, value in flat.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "fc":
            if arr.dtype.kind != "V":  # ints/bools are always finite; "V": ml_dtypes (bfloat16)
                continue
            arr = arr.astype(np.float32)
        if np.all(np.isfinite(arr)):
            continue
        if arr.size == 1:
            bad[name] = float(arr.reshape(())) if arr.dtype.kind == "f" else complex(arr)
        else:
            n_nan = int(np.isnan(arr).sum())
            n_inf = int(np.isinf(arr).sum())
            bad[name] = f"<{n_nan} nan, {n_inf} inf of {arr.size}>"
    if bad:
        raise NonFiniteLossError(step, bad)
