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
* ``clip_score``, ``clip_r_precision``: with a converted CLIP model (``--clip=DIR``), see
  :mod:`.clip_metrics`.
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

import itertools
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
from attngan_jax.eval import fixed_captions, protocols, sampling
from attngan_jax.eval.evaluators.attention_localisation import AttentionLocalisation
from attngan_jax.eval.evaluators.base import Context, Evaluator, GeneratedBatch, PerStage, Skip
from attngan_jax.eval.evaluators.caption_fidelity import CaptionFidelity
from attngan_jax.eval.evaluators.clip_metrics import ClipRPrecision, ClipScore
from attngan_jax.eval.evaluators.fid import FID
from attngan_jax.eval.evaluators.inception_score import InceptionScore
from attngan_jax.eval.evaluators.r_precision import FixedRPrecision, RPrecision
from attngan_jax.runtime import atomic, sharding
from attngan_jax.runtime.observe import MetricWriter, progress

EVALUATORS = {
    e.name: e
    for e in (InceptionScore, FID, RPrecision, CaptionFidelity, AttentionLocalisation, ClipScore,
              ClipRPrecision)
}  # fmt: skip
# is, fid, r_precision, caption_fidelity, attention_localisation, clip_score, clip_r_precision
METRICS = tuple(EVALUATORS)
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


def _loader(
    data_path: str, spec, batch_size: int, seed: int, shard: tuple[int, int], one_pass: bool = False
):
    """The test split in record order, repeated (later passes draw other captions).

    ``batch_size`` is global; ``shard = (index, count)`` gives this process's block of each batch.
    ``one_pass``: a single pass that drops its last partial batch (the reference scripts'
    ``drop_last=True`` loaders); the caller starts pass ``p`` with seed ``seed + p``.
    """
    return pipeline.make_loader(
        data_path,
        "test",
        global_batch_size=batch_size,
        image_sizes=tuple(spec.image_sizes),
        words_num=spec.words_num,
        seed=seed,
        shuffle=False,
        num_epochs=1 if one_pass else None,  # endless: every batch is whole (blocks are equal)
        random_crop=False,
        random_flip=False,
        sort_by_length=False,
        drop_remainder=True,  # endless: never partial; one pass: the scripts' drop_last
        shard_index=shard[0],
        shard_count=shard[1],
    )


def _record_batches(ctx: Context, shard: tuple[int, int]):
    """The loader's batches: one repeated stream, or passes that each drop their last batch."""
    if not ctx.protocol.pass_drop_last:
        yield from _loader(ctx.data_path, ctx.spec, ctx.batch_size, ctx.seed, shard)
        return
    for p in itertools.count():
        yield from _loader(
            ctx.data_path, ctx.spec, ctx.batch_size, ctx.seed + p, shard, one_pass=True
        )


def _blocks(ctx: Context, shard: tuple[int, int]):
    """Per global batch ``k``: ``(k, items of this process's block)``, until ``ctx.num_images``.

    Every batch of ``ctx.batch_size`` (a multiple of the process count) is split into equal
    blocks, process ``i`` taking items ``k * batch_size + i * block`` onwards; one process takes
    everything. A block past the last image is empty.
    """
    bsz = ctx.batch_size
    if bsz % shard[1]:
        raise InputError(f"evaluation batch size {bsz} does not split over {shard[1]} processes")
    block = bsz // shard[1]
    for k in itertools.count():
        if k * bsz >= ctx.num_images:
            return
        first = k * bsz + shard[0] * block  # item of the block's first row
        yield k, np.arange(first, first + max(0, min(block, ctx.num_images - first)))


def generated_batches(ctx: Context, generator: str, shard: tuple[int, int] = (0, 1)):
    """Yields this process's :class:`GeneratedBatch` es of ``ctx.num_images`` (item ``n``: noise ``n``).

    Args:
        ctx: the evaluation.
        generator: a label for the progress bar.
        shard: ``(process index, process count)``: the process takes its block of every batch
            (:func:`_blocks`).
    """
    m, spec, proto = ctx.model, ctx.spec, ctx.protocol
    bar = progress(ctx.num_images, desc=f"metrics ({generator})")
    bar.unit = "image"
    for (k, items), batch in zip(_blocks(ctx, shard), _record_batches(ctx, shard)):
        bar.update(min(ctx.batch_size, ctx.num_images - k * ctx.batch_size))
        n = len(items)
        if n == 0:
            continue  # the last batch ends before this block
        ids, lens = np.asarray(batch["captions"])[:n], np.asarray(batch["cap_lens"])[:n]
        z, eps = sampling.sample_noise(ctx.seed, items, spec.z_dim, spec.condition_dim,
                                       proto.truncation, proto.truncation_bound)  # fmt: skip
        imgs, atts = sampling.generate_batch(m, ids, lens, z, eps)
        yield GeneratedBatch(
            final=imgs[-1], ids=ids, lens=lens, record=batch, n=n,
            stages=tuple(imgs), attention=tuple(atts), items=items,
        )  # fmt: skip
    bar.close()


def fixed_list_batches(ctx: Context, generator: str, caps: dict, lst, shard=(0, 1)):
    """Yields the images of a fixed caption list: entry ``n`` from its caption, noise item ``n``."""
    m, spec, proto = ctx.model, ctx.spec, ctx.protocol
    query, _ = lst.global_ids(caps)
    length = max(spec.words_num, int(caps["cap_lens"].max()))  # no caption is shortened
    bar = progress(ctx.num_images, desc=f"metrics ({generator}, fixed list)")
    bar.unit = "image"
    for k, items in _blocks(ctx, shard):
        bar.update(min(ctx.batch_size, ctx.num_images - k * ctx.batch_size))
        if len(items) == 0:
            continue
        ids = fixed_captions.caption_ids(caps, query[items], length)
        lens = caps["cap_lens"][query[items]].astype(np.int32)
        z, eps = sampling.sample_noise(ctx.seed, items, spec.z_dim, spec.condition_dim,
                                       proto.truncation, proto.truncation_bound)  # fmt: skip
        imgs, atts = sampling.generate_batch(m, ids, lens, z, eps)
        rec = lst.query_record[items]
        record = {"index": rec, "class_ids": caps["class_id"][rec]}
        yield GeneratedBatch(
            final=imgs[-1], ids=ids, lens=lens, record=record, n=len(items),
            stages=tuple(imgs), attention=tuple(atts), items=items,
        )  # fmt: skip
    bar.close()


def run(
    ctx: Context,
    metrics: Sequence[str],
    generator: str = "ema",
    every_process: bool = False,
    fixed: tuple | None = None,
) -> dict[str, Any]:
    """Generates ``ctx.num_images`` images once and scores them with every requested evaluator.

    Args:
        ctx: the model, the data and the options.
        metrics: a subset of :data:`METRICS`.
        generator: a label for the progress bar.
        every_process: every process of the job calls this together: each generates its share
            (its block of every batch) and the evaluators' statistics are combined over the
            processes before the results. False: this process evaluates everything alone.
        fixed: ``(captions, list, path)`` of the ``fixed_r_precision`` protocol: the images come
            from the list's captions, R-precision is :class:`FixedRPrecision` and CLIP
            R-precision takes the list's mismatched captions.

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
                if name == "r_precision" and fixed is not None:
                    active.append(FixedRPrecision(ctx, *fixed))
                elif name == "clip_r_precision" and fixed is not None:
                    active.append(ClipRPrecision(ctx, fixed))
                else:
                    active.append(_build(name, ctx))
            except Skip as e:
                skipped[name] = str(e)
    if active:
        shard = (jax.process_index(), jax.process_count()) if every_process else (0, 1)
        batches = (fixed_list_batches(ctx, generator, *fixed[:2], shard) if fixed is not None
                   else generated_batches(ctx, generator, shard))  # fmt: skip
        for batch in batches:
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
    batch_size: int | None = None,
    seed: int = 0,
    generator: str = "ema",
    inception: str | None = None,
    inception_kind: str = "auto",
    fid_inception: str | None = None,
    fid_reference: str = "test",
    metrics: Sequence[str] | None = None,
    protocol: str | None = None,
    damsm: str | None = None,
    rp_list: str | None = None,
    clip: str | None = None,
    clip_score_variant: str = "galip",
    clip_pipeline: str = "",
) -> dict[str, Any]:
    """Computes the requested metrics of a model directory and writes them (JSON + TensorBoard).

    Args:
        workdir: a model directory (or a demo workdir whose ``attngan/`` is one).
        data_dir: the prepared dataset (or its ``data_dir`` root); default ``data/<dataset>``.
        num_images: images to generate (0: the protocol's number; ``default``: one per test
            record). Another number than the protocol's is listed under ``deviations``.
        batch_size: generator/Inception batch size (None: the protocol's, else 32); another
            size than a protocol that fixes one is listed under ``deviations``.
        seed: noise seed (and the caption choice of the loader).
        generator: ``"ema"`` or ``"raw"``.
        inception: IS (and FID) network weights (see :mod:`attngan_jax.metrics.networks`).
        inception_kind: ``auto``, ``torchvision``, ``fid`` or ``stackgan``.
        fid_inception: a separate FID network (kind detected), e.g. pytorch-fid weights next to
            the StackGAN IS network; default ``inception``.
        fid_reference: an ``.npz`` of ``mu``/``sigma`` or a split name (``test``).
        metrics: a subset of :data:`METRICS` (None: the protocol's).
        protocol: a preset of :mod:`attngan_jax.eval.protocols` (None/"": ``default``).
        damsm: ``fixed_r_precision``: the model directory whose DAMSM judges.
        rp_list: ``fixed_r_precision``: the caption list (drawn and saved there if missing;
            default beside the prepared dataset).
        clip: a CLIP model directory (``python -m attngan_jax.convert.clip``) for
            ``clip_score`` / ``clip_r_precision``; None: they are skipped.
        clip_score_variant: ``galip`` (mean cosine x 100) or ``clipscore`` (2.5 max(cos, 0) x 100).
        clip_pipeline: CLIP's preprocessing, ``openai`` or ``galip`` ("": each metric's default).

    Returns:
        The dict written to ``DIR/eval/metrics_<generator>.json``.
    """
    t0 = time.time()
    proto = protocols.get(protocol)
    metrics = proto.metrics if metrics is None else tuple(metrics)
    bad = sorted(set(metrics) - set(METRICS))
    if bad:
        raise InputError(f"unknown metrics {bad}; choose from {METRICS}")
    mdir = model_dir.resolve(workdir)
    m = sampling.load_model(mdir, raw=generator == "raw")
    dataset = m.spec.dataset
    data_path = resolve_data_path(data_dir, dataset)
    records = pipeline.num_records(data_path, "test")
    deviations = []
    if batch_size and proto.batch_size and batch_size != proto.batch_size:
        deviations.append(f"batch_size {batch_size} (preset {proto.batch_size})")
    batch_size = batch_size or proto.batch_size or 32
    preset_images = proto.num_images
    if proto.passes:  # full passes, each dropping its last partial batch when pass_drop_last
        per_pass = records // batch_size * batch_size if proto.pass_drop_last else records
        preset_images = proto.passes * per_pass
    if num_images and preset_images and num_images != preset_images:
        deviations.append(f"num_images {num_images} (preset {preset_images})")
    ctx = Context(
        model=m, model_dir=mdir, data_path=data_path, dataset=dataset,
        num_images=num_images or preset_images or records, batch_size=batch_size,
        seed=seed, inception=inception, inception_kind=inception_kind,
        fid_inception=fid_inception, fid_reference=fid_reference, protocol=proto, damsm=damsm,
        rp_list=rp_list, clip=clip, clip_score_variant=clip_score_variant,
        clip_pipeline=clip_pipeline,
    )  # fmt: skip
    if ctx.num_images < 1:
        raise InputError(f"--protocol={proto.name}: no image to generate ({records} test records, "
                         f"batches of {batch_size} per pass)")  # fmt: skip
    out: dict[str, Any] = {
        "model_dir": os.path.abspath(mdir), "generator": generator, "dataset": dataset,
        "data_path": os.path.abspath(data_path), "split": "test", "num_images": ctx.num_images,
        "seed": seed, "batch_size": batch_size, "image_size": ctx.image_size,
        "images": "final stage; each Inception network's pipeline quantises (see its 'pipeline')",
        "protocol": {**proto.recipe(dataset), "deviations": deviations, "run": {
            "num_images": ctx.num_images, "batch_size": batch_size, "seed": seed,
            "noise": "z, eps of image n from fold_in(key(seed), n)",
            "captions": "loader pass p uses seed + p" if proto.pass_drop_last
                        else "the loader's seeded choice, record order, repeated"}},
    }  # fmt: skip
    fixed, skipped = None, {}
    if proto.r_precision.mode == "fixed_list" and "r_precision" in metrics and not damsm:
        metrics = tuple(x for x in metrics if x != "r_precision")  # no list drawn, no fallback
        skipped["r_precision"] = (
            f"--protocol={proto.name} scores with a named DAMSM: pass --damsm=DIR (a model "
            "directory whose DAMSM encoders judge, e.g. the released bird/coco DAMSM imported "
            "with python -m attngan_jax.convert.release)"
        )
    if proto.r_precision.mode == "fixed_list" and (
        "r_precision" in metrics or ("clip_r_precision" in metrics and clip)
    ):
        caps = pipeline.split_captions(data_path, "test")
        n_list = num_images or proto.num_images or records
        path = rp_list or fixed_captions.default_path(data_path, "test", n_list, seed)
        lst = fixed_captions.load_or_create(
            path, caps, n_list, seed, dataset in ("coco", "custom"),
            meta={"dataset": dataset, "split": "test"},
        )  # fmt: skip
        ctx.num_images = len(lst)
        out["num_images"] = out["protocol"]["run"]["num_images"] = len(lst)
        out["protocol"]["run"]["captions"] = "the fixed list's, entry n -> image n"
        fixed = (caps, lst, path)
    res = run(ctx, metrics, generator, fixed=fixed)  # this process alone (its local devices)
    res["skipped"] = {**skipped, **res["skipped"]}
    out.update(res)
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
    atomic.write_json(path, out, indent=2, sort_keys=True, default=float)
    with MetricWriter(os.path.join(mdir, "eval", "tensorboard")) as w:
        w.write_scalars(0, _scalars(out["metrics"], f"eval_{generator}/"))
