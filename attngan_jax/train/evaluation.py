"""Evaluation during training: ``config.evals`` as periodic actions of the loop, and the best model.

Each ``config.evals.<name>`` (``config_lib.eval_entry``) of the running phase becomes one
:class:`~attngan_jax.train.loop.Periodic` action (:func:`periodic_evals`): every ``every_steps``
steps and at the last step it scores the training state (the GAN: the EMA generator with the
frozen encoders, :func:`attngan_jax.eval.sampling.local_model`; DAMSM: the encoders on held-out
batches, :func:`evaluate_damsm`), on every process (each its share, statistics combined). The
figures go to TensorBoard (``eval/<name>/...``, or ``eval/<key>`` when the key already starts with
the name) and to ``WORKDIR/<phase>/eval/<step>.json`` (``{name: {"metrics", "skipped", ...}}``,
written atomically by the primary; evaluations due at the same step share the file).

:class:`Best` keeps the best model so far (``config.best``): when an evaluation's figure beats the
best one (strictly), the phase's networks are exported to ``WORKDIR/<phase>/best/`` in the format
of the phase's own export (a model directory that ``eval.py`` and the local page load) with
``best.json`` (step, value, metric, protocol). The directory is written under a temporary name and
swapped in; a resumed run reads the best value back from ``best.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from attngan_jax import config_lib
from attngan_jax.data import negatives
from attngan_jax.errors import InputError
from attngan_jax.eval import evaluators, protocols, sampling
from attngan_jax.eval.evaluators.base import Context
from attngan_jax.runtime import atomic, faults, sharding
from attngan_jax.train import damsm, loop

log = logging.getLogger(__name__)
BEST_JSON = "best.json"


def eval_path(workdir: str, step: int) -> str:
    """Where the evaluations of ``step`` are written."""
    return os.path.join(workdir, "eval", f"{step}.json")


def write_json(path: str, obj: Any) -> None:
    """Writes a record (indented, sorted keys, numpy scalars as floats) atomically.

    See :mod:`attngan_jax.runtime.atomic` for the crash-safety rule.
    """
    atomic.write_json(path, obj, indent=2, sort_keys=True, default=float)


def flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Nested figures -> ``{"a/b/c": value}`` of the finite numbers."""
    flat: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            flat.update(flatten(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float, np.number)) and math.isfinite(float(v)):
            flat[prefix + str(k)] = float(v)
    return flat


# ----------------------------------------------------------------------------- the actions
def periodic_evals(
    config, phase: str, workdir: str, compute: Callable[[Any, Any], dict], best: Best | None
) -> list[loop.Periodic]:
    """One periodic action per ``config.evals`` entry of ``phase`` (in name order).

    Args:
        config: the experiment config.
        phase: ``"damsm"`` or ``"attngan"`` (:data:`config_lib.EVAL_TYPES`).
        workdir: the phase's directory.
        compute: ``compute(entry, state) -> {"metrics", "skipped", ...}`` of the phase.
        best: the best-model keeper, or None.
    """
    actions = []
    for name, entry in sorted(config.evals.items()):
        if config_lib.EVAL_TYPES[entry.type] == phase:
            if entry.batch_size % jax.process_count() and phase != "damsm":
                raise InputError(
                    f"--config.evals.{name}.batch_size={entry.batch_size} does not split over "
                    f"{jax.process_count()} processes; use a multiple of {jax.process_count()}"
                )
            run = _Evaluation(name, entry, workdir, compute, best)
            actions.append(loop.Periodic(f"eval {name}", entry.every_steps, run))
    return actions


class _Evaluation:
    """One evaluation entry: compute, then TensorBoard, ``eval/<step>.json`` and the best model."""

    def __init__(self, name, entry, workdir: str, compute: Callable, best: Best | None):
        self.name, self.entry, self.workdir = name, entry, workdir
        self.compute, self.best = compute, best

    def __call__(self, step: int, state: Any, writer) -> None:
        t0 = time.time()
        e = self.entry
        out = self.compute(e, state)
        out.update(type=e.type, stages=e.stages, protocol=e.protocol, processes=jax.process_count(),
                   seconds=round(time.time() - t0, 2))  # fmt: skip
        if config_lib.EVAL_TYPES[e.type] == "damsm":
            out["num_batches"] = e.num_batches
        else:
            out["num_images"] = e.num_images
        flat = flatten(out["metrics"])
        writer.write_scalars(step, {self._tag(k): v for k, v in flat.items()})
        if sharding.is_primary():
            path = eval_path(self.workdir, step)
            record = {}
            if os.path.exists(path):  # another evaluation of this step, or a replayed step
                with open(path) as f:
                    record = json.load(f)
            record[self.name] = out
            write_json(path, record)
        log.info("step %d: %s %s", step, self.name, flat)
        if self.best is not None:
            self.best.offer(step, flat, state, e.protocol)
        sharding.barrier(f"eval_{self.name}_{step}")  # the primary wrote; nobody runs ahead

    def _tag(self, key: str) -> str:
        return f"eval/{key}" if key.startswith(self.name) else f"eval/{self.name}/{key}"


# ----------------------------------------------------------------------------- the phases' figures
def generator_evaluation(config, spec, vocab, data_path: str, workdir: str) -> Callable:
    """``compute(entry, state)`` of the GAN: the evaluator of ``entry.type`` on the EMA generator."""
    networks: dict = {}  # Inception networks, loaded once for the run

    def compute(entry, state) -> dict:
        g_vars = {"params": state.ema_params, "batch_stats": state.g_stats}
        model = sampling.local_model(spec, vocab, g_vars, state.encoders)
        ctx = Context(
            model=model, model_dir=workdir, data_path=data_path, dataset=spec.dataset,
            num_images=entry.num_images, batch_size=entry.batch_size, seed=config.seed,
            inception=entry.inception or None, inception_kind=entry.inception_kind,
            fid_inception=entry.fid_inception or None, fid_reference=entry.fid_reference,
            stages=entry.stages, protocol=protocols.get(entry.protocol or "default"),
            clip=entry.get("clip") or None, clip_score_variant=entry.get("clip_score_variant", "galip"),
            clip_pipeline=entry.get("clip_pipeline", ""), _networks=networks,
        )  # fmt: skip
        return evaluators.run(ctx, [entry.type], every_process=True)

    return compute


def damsm_evaluation(config, spec, vocab, data_path: str, mesh) -> Callable:
    """``compute(entry, state)`` of DAMSM pretraining (:func:`evaluate_damsm`)."""

    def compute(entry, state) -> dict:
        m = evaluate_damsm(config, spec, state, data_path, mesh, vocab, entry.num_batches)
        return {"metrics": m, "skipped": {} if m else {entry.type: "no test batch"}}

    return compute


def evaluate_damsm(config, spec, state, data_path: str, mesh, vocab=None, num_batches=0) -> dict:
    """Held-out DAMSM losses and in-batch retrieval accuracy (test split, eval mode).

    Every process runs it (the batches are global, as in training). With a vocabulary that names
    shapes, also ``shape_accuracy`` (see ``damsm.make_eval_step``).

    Args:
        num_batches: test batches of ``damsm.batch_size``; 0: ``config.eval.num_batches``.

    Returns:
        ``{"damsm_test_<figure>": mean over the batches}``.
    """
    from attngan_jax.data import pipeline

    bs = config.damsm.batch_size
    d = config.data
    loader = pipeline.make_loader(
        data_path, "test", global_batch_size=bs, image_sizes=config_lib.image_sizes(config),
        words_num=d.words_num, seed=config.seed, shuffle=False, num_epochs=1, random_crop=False,
        random_flip=False, sort_by_length=d.sort_by_length, worker_count=0,
        read_threads=d.read_threads,
    )  # fmt: skip
    shape_tables = None
    if vocab is not None:
        shape_tables = negatives.shape_word_table(vocab.ixtoword)
        shape_tables = shape_tables if (shape_tables[1] >= 0).sum() >= 2 else None
    eval_step = _damsm_eval_step(config, spec, shape_tables)
    items = []
    for i, batch in enumerate(loader):
        if i >= (num_batches or config.eval.num_batches):
            break
        out = sharding.call_in_lockstep(eval_step, state, sharding.to_global(batch, mesh))
        items.append(sharding.fetch(out))
    if not items:
        return {}
    return {f"damsm_test_{k}": v for k, v in damsm.mean_metrics(items).items()}


_EVAL_STEPS: dict = {}


def _damsm_eval_step(config, spec, shape_tables):
    """The jitted DAMSM eval step, built once per (config, spec, tables) and reused."""
    key = (config.to_json_best_effort(), spec, None if shape_tables is None else
           tuple(np.asarray(t).tobytes() for t in shape_tables))  # fmt: skip
    if key not in _EVAL_STEPS:
        _EVAL_STEPS[key] = jax.jit(damsm.make_eval_step(config, spec, shape_tables))
    return _EVAL_STEPS[key]


# ----------------------------------------------------------------------------- the best model
class Best:
    """The best model so far by one figure (``config.best``), exported to ``workdir/best/``.

    Args:
        best: ``"<metric>:max"`` or ``"<metric>:min"``.
        workdir: the phase's directory.
        export: ``export(directory, state)`` writes the phase's model directory (primary only).
    """

    def __init__(self, best: str, workdir: str, export: Callable[[str, Any], None]):
        self.metric, self.mode = config_lib.parse_best(best)
        self.workdir = workdir
        self.directory = os.path.join(workdir, "best")
        self.export = export
        if sharding.is_primary():
            _recover(workdir)
        sharding.barrier("best_recovered")
        self.value = None
        path = os.path.join(self.directory, BEST_JSON)
        if os.path.exists(path):
            with open(path) as f:
                kept = json.load(f)
            if kept.get("metric") == self.metric:  # another metric's best starts afresh
                self.value = float(kept["value"])

    def beats(self, value: float) -> bool:
        """Whether ``value`` is strictly better than the best so far."""
        if self.value is None:
            return True
        return value > self.value if self.mode == "max" else value < self.value

    def offer(self, step: int, flat: dict[str, float], state: Any, protocol: str = "") -> bool:
        """Exports ``state`` when ``flat[metric]`` beats the best; returns whether it did."""
        value = flat.get(self.metric)
        if value is None or not self.beats(value):
            return False
        self.value = value
        if sharding.is_primary():
            record = {"step": step, "value": value, "metric": self.metric, "mode": self.mode,
                      "protocol": protocol}  # fmt: skip
            tmp = atomic.temp_name(self.directory)  # .tmp-best-<hex>
            os.makedirs(tmp)
            self.export(tmp, state)
            write_json(os.path.join(tmp, BEST_JSON), record)
            faults.point(f"best:{os.path.basename(self.workdir)}")
            atomic.replace_dir(tmp, self.directory)
        log.info("step %d: best %s = %g, exported to %s", step, self.metric, value, self.directory)
        return True


def _recover(workdir: str) -> None:
    """What a killed export left: a temporary best is deleted; a moved-aside one put back."""
    names = os.listdir(workdir) if os.path.isdir(workdir) else []
    best = os.path.join(workdir, "best")
    for n in sorted(names):
        path = os.path.join(workdir, n)
        if n.startswith(".tmp-best-"):
            shutil.rmtree(path, ignore_errors=True)
        elif n.startswith(".old-best-"):
            if os.path.exists(best):
                shutil.rmtree(path, ignore_errors=True)
            else:  # killed between the two renames: the old best is the best
                os.replace(path, best)
