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
* ``caption_fidelity``: the shapes oracle (shapes dataset only).

Results go to ``DIR/eval/metrics_<generator>.json`` and to TensorBoard (``DIR/eval/tensorboard``).
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
from attngan_jax.eval.run import metrics_path, resolve_model_dir
from attngan_jax.metrics import fid as fid_lib
from attngan_jax.metrics.inception_score import InceptionScoreAccumulator, stackgan_cub_options
from attngan_jax.metrics.networks import EvalInception, load_eval_inception
from attngan_jax.metrics.r_precision import r_precision, sample_mismatched_indices
from attngan_jax.runtime.observe import MetricWriter, progress
from attngan_jax.train import damsm
from attngan_jax.visualize import to_uint8

METRICS = ("is", "fid", "r_precision", "caption_fidelity")


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


def _loader(data_path: str, model_cfg, batch_size: int, seed: int, repeat: bool):
    return pipeline.make_loader(
        data_path,
        "test",
        global_batch_size=batch_size,
        image_sizes=tuple(model_cfg.data.image_sizes),
        words_num=model_cfg.data.words_num,
        seed=seed,
        shuffle=False,
        num_epochs=None if repeat else 1,
        random_crop=False,
        random_flip=False,
        sort_by_length=False,
        drop_remainder=False,
        shard_index=0,
        shard_count=1,
        read_threads=model_cfg.data.get("read_threads", 16),  # as training reads this dataset
    )


def reference_stats(
    net: EvalInception, reference: str, mdir: str, data_path: str, dataset: str, size: int,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, str]:  # fmt: skip
    """``(mu, sigma, where)`` from an ``.npz`` or from a split's images (computed once, cached)."""
    if reference.endswith(".npz"):
        mu, sigma = fid_lib.load_reference_stats(reference)
        return mu, sigma, reference
    cache = os.path.join(mdir, "eval", f"fid_ref_{dataset}_{reference}_{net.kind}_{size}.npz")
    if os.path.exists(cache):
        mu, sigma = fid_lib.load_reference_stats(cache)
        return mu, sigma, cache
    loader = pipeline.make_loader(
        data_path, reference, global_batch_size=batch_size, image_sizes=(size,), seed=0,
        shuffle=False, num_epochs=1, random_crop=False, random_flip=False, sort_by_length=False,
        drop_remainder=False, shard_index=0, shard_count=1,
    )  # fmt: skip
    stats = fid_lib.FeatureStats(2048)
    bar = progress(pipeline.num_records(data_path, reference), desc=f"FID reference ({reference})")
    for batch in loader:
        stats.update(net(to_uint8(batch[f"image_{size}"]))[0])
        bar.update(len(batch["cap_lens"]))
    bar.close()
    stats.save_npz(cache)
    mu, sigma = stats.mean_cov()
    return mu, sigma, cache


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
    mdir = resolve_model_dir(workdir)
    mj = model_dir.load_model_config(mdir)
    m = sampling.load_model(mdir, raw=generator == "raw")
    dataset = mj["dataset"]
    data_path = resolve_data_path(data_dir, dataset)
    n_total = num_images or pipeline.num_records(data_path, "test")
    size = int(mj["image_sizes"][-1])
    skipped: dict[str, str] = {}
    out: dict[str, Any] = {
        "mdir": os.path.abspath(mdir), "generator": generator, "dataset": dataset,
        "data_path": os.path.abspath(data_path), "split": "test", "num_images": n_total,
        "seed": seed, "batch_size": batch_size, "image_size": size,
        "images": "final stage, quantised to uint8 before any Inception network",
    }  # fmt: skip

    want = set(metrics)
    is_net = fid_net = None
    if want & {"is", "fid"} and not (inception or fid_inception):
        for k in sorted(want & {"is", "fid"}):
            skipped[k] = (
                "no Inception weights given (--inception): they cannot be downloaded here; see "
                "docs/evaluation.md for the files each convention needs"
            )
    if "is" in want and inception:
        is_net = load_eval_inception(inception, inception_kind)
        if not is_net.num_classes:
            skipped["is"] = f"{inception} has no classifier (fc) layer: no Inception Score"
            is_net = None
    if "fid" in want and (fid_inception or inception):
        path = fid_inception or inception
        reuse = is_net is not None and path == inception
        fid_net = (
            is_net
            if reuse
            else load_eval_inception(path, "auto" if fid_inception else inception_kind)
        )
        if fid_net.kind == "stackgan":
            skipped["fid"] = "the StackGAN CUB network is not an FID network: pass --fid_inception"
            fid_net = None
    is_acc = None
    if is_net is not None:
        opts = stackgan_cub_options() if is_net.kind == "stackgan" else {"from_logits": True}
        classes = is_net.num_classes - (1 if opts.get("drop_background") else 0)
        try:
            is_acc = InceptionScoreAccumulator(n_total, classes, **opts)
        except ValueError as e:
            skipped["is"] = f"{e} (StackGAN: full batches of 64, 10 splits)"
        out["inception"] = is_net.convention
    stats = fid_lib.FeatureStats(2048) if fid_net is not None else None
    if fid_net is not None:
        out["fid_inception"] = fid_net.convention
    do_rp = "r_precision" in want and model_dir.has_damsm(mdir)
    if "r_precision" in want and not do_rp:
        skipped["r_precision"] = "the model directory has no DAMSM encoders"
    do_cf = "caption_fidelity" in want and dataset == "shapes"
    if "caption_fidelity" in want and not do_cf:
        skipped["caption_fidelity"] = f"only for the shapes dataset (this is {dataset!r})"

    text, image = damsm.build_models(m.config)
    enc_img = jax.jit(lambda v, x: image.apply(v, x, train=False)[1])
    enc_txt = jax.jit(lambda v, ids, lens: text.apply(v, ids, lens, train=False)[1])
    codes, sents, classes_seen = [], [], []
    cf_hits: dict[str, float] = {}
    from attngan_jax.data.shapes import oracle

    per_image_class = dataset in ("coco", "custom")  # no classes: mismatched = other images
    done = 0
    bar = progress(n_total, desc=f"metrics ({generator})")
    bar.unit = "image"
    for batch in _loader(data_path, m.config, batch_size, seed, repeat=True):
        n = min(len(batch["cap_lens"]), n_total - done)
        ids, lens = np.asarray(batch["captions"])[:n], np.asarray(batch["cap_lens"])[:n]
        z, eps = sampling.sample_noise(
            seed, np.arange(done, done + n), m.config.model.z_dim, m.config.model.condition_dim
        )
        imgs, _ = sampling.generate_batch(m, ids, lens, z, eps)
        final = imgs[-1]  # (n, S, S, 3) in [-1, 1]
        q = to_uint8(final)
        pool = None
        if is_acc is not None:
            pool, logits = is_net(q)
            is_acc.update(logits)
        if stats is not None:
            stats.update(pool if pool is not None and fid_net is is_net else fid_net(q)[0])
        if do_rp:
            codes.append(np.asarray(enc_img(m.encoders["image"], final)))
            sents.append(np.asarray(enc_txt(m.encoders["text"], ids, lens)))
            cls = batch["index"] if per_image_class else batch["class_ids"]
            classes_seen.append(np.asarray(cls)[:n])
        if do_cf:
            texts = [m.vocab.decode(ids[b, : lens[b]]) for b in range(n)]
            r = oracle.score(final, texts)
            for c in oracle.CRITERIA:
                if r["n_" + c]:
                    cf_hits[c] = cf_hits.get(c, 0.0) + r[c] * r["n_" + c]
                cf_hits["n_" + c] = cf_hits.get("n_" + c, 0) + r["n_" + c]
        done += n
        bar.update(n)
        if done >= n_total:
            break
    bar.close()

    res: dict[str, Any] = {}
    if is_acc is not None:
        res["inception_score"], res["inception_score_std"] = is_acc.result()
    if stats is not None:
        mu, sigma, where = reference_stats(
            fid_net, fid_reference, mdir, data_path, dataset, size, batch_size
        )
        g_mu, g_sigma = stats.mean_cov()
        res["fid"] = fid_lib.frechet_distance(g_mu, g_sigma, mu, sigma)
        out["fid_reference"] = where
        out["fid_column"] = fid_net.convention["fid_column"]
    if do_rp:
        codes, sents, cls = (
            np.concatenate(codes),
            np.concatenate(sents),
            np.concatenate(classes_seen),
        )
        try:
            num = min(99, len(codes) - 1)
            idx = sample_mismatched_indices(cls, num=num, rng=np.random.default_rng(seed))
            res["r_precision"], res["r_precision_std"] = r_precision(
                codes, sents, sents[idx], folds=10, seed=seed
            )
            res["r_precision_candidates"] = num + 1
        except ValueError as e:
            skipped["r_precision"] = str(e)
    if do_cf:
        cf: dict[str, float] = {"n": done}
        for c in oracle.CRITERIA:
            k = cf_hits.get("n_" + c, 0)
            cf[c] = cf_hits.get(c, 0.0) / k if k else float("nan")
            cf["n_" + c] = k
        res["caption_fidelity"] = cf
    out["metrics"] = res
    out["skipped"] = skipped
    out["seconds"] = round(time.time() - t0, 1)
    _write(mdir, generator, out)
    return out


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
