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

Each metric is an evaluator (:mod:`.base`: built from a context, ``update`` per batch, ``result``
once) in a module of its own; :func:`evaluate` generates the images once and feeds every requested
evaluator. Results go to ``DIR/eval/metrics_<generator>.json`` and to TensorBoard
(``DIR/eval/tensorboard``).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from attngan_jax import model_dir
from attngan_jax.data import pipeline
from attngan_jax.data.tfds_builders import dataset_dir, is_prepared
from attngan_jax.errors import InputError, MissingInputError
from attngan_jax.eval import fixed_captions, protocols, sampling
from attngan_jax.eval.evaluators.attention_localisation import AttentionLocalisation
from attngan_jax.eval.evaluators.base import Context, Evaluator, GeneratedBatch, Skip
from attngan_jax.eval.evaluators.caption_fidelity import CaptionFidelity
from attngan_jax.eval.evaluators.fid import FID
from attngan_jax.eval.evaluators.inception_score import InceptionScore
from attngan_jax.eval.evaluators.r_precision import FixedRPrecision, RPrecision
from attngan_jax.runtime.observe import MetricWriter, progress

EVALUATORS = {
    e.name: e for e in (InceptionScore, FID, RPrecision, CaptionFidelity, AttentionLocalisation)
}
METRICS = tuple(EVALUATORS)  # is, fid, r_precision, caption_fidelity, attention_localisation


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


def _loader(data_path: str, spec, batch_size: int, seed: int, one_pass: bool = False):
    """The test split in record order, repeated (later passes draw other captions).

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
        num_epochs=1 if one_pass else None,
        random_crop=False,
        random_flip=False,
        sort_by_length=False,
        drop_remainder=one_pass,
        shard_index=0,
        shard_count=1,
    )


def _record_batches(ctx: Context):
    """The loader's batches: one repeated stream, or passes that each drop their last batch."""
    if not ctx.protocol.pass_drop_last:
        yield from _loader(ctx.data_path, ctx.spec, ctx.batch_size, ctx.seed)
        return
    for p in itertools.count():
        yield from _loader(ctx.data_path, ctx.spec, ctx.batch_size, ctx.seed + p, one_pass=True)


def generated_batches(ctx: Context, generator: str):
    """Yields :class:`GeneratedBatch` es of ``ctx.num_images`` images (image ``n``: noise item ``n``)."""
    m, spec, done = ctx.model, ctx.spec, 0
    proto = ctx.protocol
    bar = progress(ctx.num_images, desc=f"metrics ({generator})")
    bar.unit = "image"
    for batch in _record_batches(ctx):
        n = min(len(batch["cap_lens"]), ctx.num_images - done)
        ids, lens = np.asarray(batch["captions"])[:n], np.asarray(batch["cap_lens"])[:n]
        items = np.arange(done, done + n)
        z, eps = sampling.sample_noise(ctx.seed, items, spec.z_dim, spec.condition_dim,
                                       proto.truncation, proto.truncation_bound)  # fmt: skip
        imgs, atts = sampling.generate_batch(m, ids, lens, z, eps)
        yield GeneratedBatch(
            final=imgs[-1], ids=ids, lens=lens, record=batch, n=n,
            stages=tuple(imgs), attention=tuple(atts),
        )  # fmt: skip
        done += n
        bar.update(n)
        if done >= ctx.num_images:
            break
    bar.close()


def fixed_list_batches(ctx: Context, generator: str, caps: dict, lst):
    """Yields the images of a fixed caption list: entry ``n`` from its caption, noise item ``n``."""
    m, spec = ctx.model, ctx.spec
    proto = ctx.protocol
    query, _ = lst.global_ids(caps)
    length = max(spec.words_num, int(caps["cap_lens"].max()))  # no caption is shortened
    bar = progress(ctx.num_images, desc=f"metrics ({generator}, fixed list)")
    bar.unit = "image"
    for done in range(0, ctx.num_images, ctx.batch_size):
        items = np.arange(done, min(done + ctx.batch_size, ctx.num_images))
        ids = fixed_captions.caption_ids(caps, query[items], length)
        lens = caps["cap_lens"][query[items]].astype(np.int32)
        z, eps = sampling.sample_noise(ctx.seed, items, spec.z_dim, spec.condition_dim,
                                       proto.truncation, proto.truncation_bound)  # fmt: skip
        imgs, atts = sampling.generate_batch(m, ids, lens, z, eps)
        rec = lst.query_record[items]
        record = {"index": rec, "class_ids": caps["class_id"][rec]}
        yield GeneratedBatch(
            final=imgs[-1], ids=ids, lens=lens, record=record, n=len(items),
            stages=tuple(imgs), attention=tuple(atts),
        )  # fmt: skip
        bar.update(len(items))
    bar.close()


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
        rp_list=rp_list,
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
    if proto.r_precision.mode == "fixed_list" and "r_precision" in metrics:
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
    active: list[Evaluator] = []
    for name in METRICS:  # a fixed order, whatever the order asked
        if name in metrics:
            try:
                if name == "r_precision" and fixed is not None:
                    active.append(FixedRPrecision(ctx, *fixed))
                else:
                    active.append(EVALUATORS[name](ctx))
            except Skip as e:
                skipped[name] = str(e)
    if active:
        batches = (fixed_list_batches(ctx, generator, *fixed[:2]) if fixed is not None
                   else generated_batches(ctx, generator))  # fmt: skip
        for batch in batches:
            for ev in active:
                ev.update(batch)
    res: dict[str, Any] = {}
    for ev in active:
        try:
            res.update(ev.result())
        except Skip as e:
            skipped[ev.name] = str(e)
        out.update(ev.info)
    out["metrics"] = res
    out["skipped"] = skipped
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
