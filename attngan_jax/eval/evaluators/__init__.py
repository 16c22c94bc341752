"""Metrics of a model directory on its dataset's test captions, streamed (``eval.py --mode=metrics``).

Protocol: ``num_images`` images are generated from the test split in record order, one caption per
image per pass (the loader's seeded choice; later passes over the split draw other captions, as
DM-GAN's 30,000-image runs do), image ``n`` with noise ``fold_in(key(seed), n)``. Nothing scales
with ``num_images`` except the R-precision codes ((N, D) floats, D = 256): Inception features go into
:class:`~attngan_jax.metrics.fid.FeatureStats`, class probabilities into the streaming
:class:`~attngan_jax.metrics.inception_score.InceptionScoreAccumulator`, caption-fidelity hits into
counters.

* ``is``: Inception Score (10 splits) with the ``--inception`` network (convention in the JSON).
* ``fid``: FID of the final stage against reference statistics: an ``.npz`` (``mu``, ``sigma``) or a
  split name, whose images are passed through the same network once and cached as
  ``DIR/eval/fid_ref_<dataset>_<split>_<kind>_<size>.npz``.
* ``r_precision``: the DAMSM protocol with the model directory's own encoders (true caption among
  99 mismatched ones of other classes; other images for COCO/custom), 10 folds.
* ``caption_fidelity``: the shapes oracle (shapes dataset only), for the final stage and, as
  ``caption_fidelity_per_stage``, for every stage.
* ``attention_localisation``: the share of each colour / shape word's attention that falls on the
  object it names, per attending stage (shapes dataset only).

Each metric is an evaluator (:mod:`.base`: built from a context, ``update`` per batch, ``gather``
and ``result`` once) in a module of its own; :func:`run` generates the images once and feeds every
requested evaluator, :func:`evaluate` runs it on a model directory and writes the results to
``DIR/eval/metrics_<generator>.json`` and to TensorBoard (``DIR/eval/tensorboard``). During
training (``attngan_jax.train.evaluation``) :func:`run` gets a model made from the training state
and runs on every process: each generates and scores its block of every batch and the statistics
are combined (``sharding.process_allgather``), so N processes report what one does.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from attngan_jax import model_dir
from attngan_jax.data import pipeline
from attngan_jax.data.tfds_builders import dataset_dir, is_prepared
from attngan_jax.errors import InputError, MissingInputError
from attngan_jax.eval import sampling
from attngan_jax.eval.evaluators.attention_localisation import AttentionLocalisation
from attngan_jax.eval.evaluators.base import Context, Evaluator, GeneratedBatch, PerStage, Skip
from attngan_jax.eval.evaluators.caption_fidelity import CaptionFidelity
from attngan_jax.eval.evaluators.fid import FID
from attngan_jax.eval.evaluators.inception_score import InceptionScore
from attngan_jax.eval.evaluators.r_precision import RPrecision
from attngan_jax.runtime import sharding
from attngan_jax.runtime.observe import MetricWriter, progress

EVALUATORS = {
    e.name: e for e in (InceptionScore, FID, RPrecision, CaptionFidelity, AttentionLocalisation)
}
METRICS = tuple(EVALUATORS)  # is, fid, r_precision, caption_fidelity, attention_localisation
# Already every stage (per_stage / per attending stage); the others go through PerStage.
_SCORE_EVERY_STAGE = ("caption_fidelity", "attention_localisation")


def resolve_data_path(data_dir: str | None, dataset: str) -> str:
    """A prepared dataset directory from ``--data_dir`` (the dataset dir or its ``data_dir`` root)."""
    data_dir = data_dir or os.path.join("data", dataset)
    for cand in (data_dir, dataset_dir(data_dir, dataset)):
        if is_prepared(cand):
            return cand
    raise MissingInputError(
        f"no prepared {dataset!r} dataset at {data_dir} (nor {dataset_dir(data_dir, dataset)}): "
        f"pass --data_dir, or prepare it with python -m attngan_jax.data.prepare"
    )


def _loader(data_path: str, spec, batch_size: int, seed: int, shard: tuple[int, int]):
    """The test split in record order, repeated (later passes draw other captions).

    ``batch_size`` is global; ``shard = (index, count)`` gives this process's block of each batch.
    """
    return pipeline.make_loader(
        data_path,
        "test",
        global_batch_size=batch_size,
        image_sizes=tuple(spec.image_sizes),
        words_num=spec.words_num,
        seed=seed,
        shuffle=False,
        num_epochs=None,  # endless, so every batch is whole (and blocks are equal)
        random_crop=False,
        random_flip=False,
        sort_by_length=False,
        shard_index=shard[0],
        shard_count=shard[1],
    )


def generated_batches(ctx: Context, generator: str, shard: tuple[int, int] = (0, 1)):
    """Yields this process's :class:`GeneratedBatch` es of ``ctx.num_images`` (item ``n``: noise ``n``).

    Args:
        ctx: the evaluation.
        generator: a label for the progress bar.
        shard: ``(process index, process count)``: the process takes its block of every batch of
            ``ctx.batch_size`` (a multiple of the count), items ``k * batch_size + index * block``
            onwards; one process takes everything.
    """
    m, spec = ctx.model, ctx.spec
    bsz = ctx.batch_size
    if bsz % shard[1]:
        raise InputError(f"evaluation batch size {bsz} does not split over {shard[1]} processes")
    block = bsz // shard[1]
    bar = progress(ctx.num_images, desc=f"metrics ({generator})")
    bar.unit = "image"
    for k, batch in enumerate(_loader(ctx.data_path, spec, bsz, ctx.seed, shard)):
        first = k * bsz + shard[0] * block  # item of the block's first row
        if k * bsz >= ctx.num_images:
            break
        n = max(0, min(block, ctx.num_images - first))
        bar.update(min(bsz, ctx.num_images - k * bsz))
        if n == 0:
            continue  # the last batch ends before this block
        ids, lens = np.asarray(batch["captions"])[:n], np.asarray(batch["cap_lens"])[:n]
        items = np.arange(first, first + n)
        z, eps = sampling.sample_noise(ctx.seed, items, spec.z_dim, spec.condition_dim)
        imgs, atts = sampling.generate_batch(m, ids, lens, z, eps)
        yield GeneratedBatch(
            final=imgs[-1], ids=ids, lens=lens, record=batch, n=n,
            stages=tuple(imgs), attention=tuple(atts), items=items,
        )  # fmt: skip
    bar.close()


def run(
    ctx: Context, metrics: Sequence[str], generator: str = "ema", every_process: bool = False
) -> dict[str, Any]:
    """Generates ``ctx.num_images`` images once and scores them with every requested evaluator.

    Args:
        ctx: the model, the data and the options.
        metrics: a subset of :data:`METRICS`.
        generator: a label for the progress bar.
        every_process: every process of the job calls this together: each generates its share
            (its block of every batch) and the evaluators' statistics are combined over the
            processes before the results. False: this process evaluates everything alone.

    Returns:
        ``{"metrics": figures, "skipped": {metric: reason}, **info}`` (the same on every process).
    """
    bad = sorted(set(metrics) - set(METRICS))
    if bad:
        raise InputError(f"unknown metrics {bad}; choose from {METRICS}")
    skipped: dict[str, str] = {}
    active: list[Evaluator] = []
    for name in METRICS:  # a fixed order, whatever the order asked
        if name in metrics:
            try:
                active.append(_build(name, ctx))
            except Skip as e:
                skipped[name] = str(e)
    if active:
        shard = (jax.process_index(), jax.process_count()) if every_process else (0, 1)
        for batch in generated_batches(ctx, generator, shard):
            for ev in active:
                ev.update(batch)
    res: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for ev in active:
        ev.gather(sharding.process_allgather if every_process else lambda tree: [tree])
        try:
            res.update(ev.result())
        except Skip as e:
            skipped[ev.name] = str(e)
        info.update(ev.info)
    return {**info, "metrics": res, "skipped": skipped}


def _build(name: str, ctx: Context) -> Evaluator:
    if ctx.stages == "all" and name not in _SCORE_EVERY_STAGE:
        return PerStage(EVALUATORS[name], ctx)
    return EVALUATORS[name](ctx)


def evaluate(
    workdir: str,
    data_dir: str | None = None,
    num_images: int = 0,
    batch_size: int = 32,
    seed: int = 0,
    generator: str = "ema",
    inception: str | None = None,
    inception_kind: str = "auto",
    fid_inception: str | None = None,
    fid_reference: str = "test",
    metrics: Sequence[str] = METRICS,
) -> dict[str, Any]:
    """Computes the requested metrics of a model directory and writes them (JSON + TensorBoard).

    Args:
        workdir: a model directory (or a demo workdir whose ``attngan/`` is one).
        data_dir: the prepared dataset (or its ``data_dir`` root); default ``data/<dataset>``.
        num_images: images to generate (0: one per test record).
        batch_size: generator/Inception batch size.
        seed: noise seed (and the caption choice of the loader).
        generator: ``"ema"`` or ``"raw"``.
        inception: IS (and FID) network weights (see :mod:`attngan_jax.metrics.networks`).
        inception_kind: ``auto``, ``torchvision``, ``fid`` or ``stackgan``.
        fid_inception: a separate FID network (kind detected), e.g. pytorch-fid weights next to
            the StackGAN IS network; default ``inception``.
        fid_reference: an ``.npz`` of ``mu``/``sigma`` or a split name (``test``).
        metrics: a subset of :data:`METRICS`.

    Returns:
        The dict written to ``DIR/eval/metrics_<generator>.json``.
    """
    t0 = time.time()
    bad = sorted(set(metrics) - set(METRICS))
    if bad:
        raise InputError(f"unknown metrics {bad}; choose from {METRICS}")
    mdir = model_dir.resolve(workdir)
    m = sampling.load_model(mdir, raw=generator == "raw")
    dataset = m.spec.dataset
    data_path = resolve_data_path(data_dir, dataset)
    ctx = Context(
        model=m, model_dir=mdir, data_path=data_path, dataset=dataset,
        num_images=num_images or pipeline.num_records(data_path, "test"), batch_size=batch_size,
        seed=seed, inception=inception, inception_kind=inception_kind,
        fid_inception=fid_inception, fid_reference=fid_reference,
    )  # fmt: skip
    out: dict[str, Any] = {
        "model_dir": os.path.abspath(mdir), "generator": generator, "dataset": dataset,
        "data_path": os.path.abspath(data_path), "split": "test", "num_images": ctx.num_images,
        "seed": seed, "batch_size": batch_size, "image_size": ctx.image_size,
        "images": "final stage, quantised to uint8 before any Inception network",
    }  # fmt: skip
    out.update(run(ctx, metrics, generator))  # this process alone (on its local devices)
    out["seconds"] = round(time.time() - t0, 1)
    _write(mdir, generator, out)
    return out


def metrics_path(mdir: str, generator: str = "ema") -> str:
    """Where the metrics of one generator of a model directory are written."""
    return os.path.join(mdir, "eval", f"metrics_{generator}.json")


def _scalars(res: dict[str, Any], prefix: str) -> dict[str, float]:
    flat: dict[str, float] = {}
    for k, v in res.items():
        if isinstance(v, dict):
            flat.update(_scalars(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and np.isfinite(v):
            flat[prefix + k] = float(v)
    return flat


def _write(mdir: str, generator: str, out: dict[str, Any]) -> None:
    path = metrics_path(mdir, generator)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True, default=float)
    os.replace(tmp, path)
    with MetricWriter(os.path.join(mdir, "eval", "tensorboard")) as w:
        w.write_scalars(0, _scalars(out["metrics"], f"eval_{generator}/"))
