"""FID of the final stage against reference statistics, streamed (docs/evaluation.md).

The reference is an ``.npz`` (``mu``, ``sigma``) or a split name, whose real images are passed
through the same network and pipeline once and cached as
``DIR/eval/fid_ref_<dataset>_<split>_<kind>_<pipeline tag>[_drop<b>]_<size>.npz``. A protocol's
FID recipe fixes the weights kind, the pipeline, the Inception batch size and drop_last.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from attngan_jax.data import pipeline
from attngan_jax.eval.evaluators.base import AllGather, Context, GeneratedBatch, Skip
from attngan_jax.metrics import fid as fid_lib
from attngan_jax.metrics.networks import EvalInception
from attngan_jax.runtime.observe import progress
from attngan_jax.visualize import to_uint8


class FID:
    """Accumulates the pool features' mean and covariance of every generated image."""

    name = "fid"

    def __init__(self, ctx: Context):
        path = ctx.fid_inception or ctx.inception
        if not path:
            raise Skip(
                "no Inception weights given (--inception): they cannot be downloaded here; see "
                "docs/evaluation.md for the files each convention needs"
            )
        kind = "auto" if ctx.fid_inception else ctx.inception_kind
        rec = ctx.protocol.fid
        if rec is None:  # today's behaviour: the network kind decides, every image counts
            self.net = ctx.network(path, kind)
            self.batch_size, self.drop_last = ctx.batch_size, False
        else:
            self.net = ctx.network(path, kind, rec.pipeline, required=rec.weights)
            self.batch_size, self.drop_last = rec.batch_size, rec.drop_last
        if self.net.kind == "stackgan":
            raise Skip("the StackGAN CUB network is not an FID network: pass --fid_inception")
        self.ctx = ctx
        self.stats = fid_lib.FeatureStats(2048)
        # drop_last: only full Inception batches count (in generation order), as the scripts do
        self.used = used_images(ctx.num_images, self.batch_size, self.drop_last)
        if self.used < 2:
            raise Skip(f"{ctx.num_images} images give {self.used} in full batches of "
                       f"{self.batch_size}: FID needs at least 2")  # fmt: skip
        self.seen = 0
        self.size = ctx.image_size  # of the images fed (an earlier stage's under PerStage)
        self.info = {"fid_inception": {**self.net.convention, "batch_size": self.batch_size,
                                       "drop_last": self.drop_last, "images_used": self.used}}  # fmt: skip

    def update(self, batch: GeneratedBatch) -> None:
        """Adds a batch's pool features (rows past the last full batch are ignored)."""
        self.size = int(batch.final.shape[1])
        items = batch.items if batch.items is not None else np.arange(batch.n) + self.seen
        self.seen += batch.n
        keep = np.asarray(items)[: batch.n] < self.used  # items past the last full batch: out
        if keep.any():
            self.stats.update(batch.inception(self.net)[0][: batch.n][keep])

    def gather(self, allgather: AllGather) -> None:
        """Merges every process's feature sums (in process order)."""
        st = self.stats
        parts = allgather({"n": np.int64(st.n), "shift": st.shift, "sum": st.sum,
                           "sum_outer": st.sum_outer})  # fmt: skip
        self.stats = fid_lib.FeatureStats(st.dim)
        for p in parts:
            other = fid_lib.FeatureStats(st.dim)
            other.n, other.shift, other.sum, other.sum_outer = (
                int(p["n"]),
                p["shift"],
                p["sum"],
                p["sum_outer"],
            )
            self.stats.merge(other)

    def result(self) -> dict[str, Any]:
        """``fid`` against the reference (its path in ``info["fid_reference"]``)."""
        c = self.ctx
        mu, sigma, where = reference_stats(
            self.net, c.fid_reference, c.model_dir, c.data_path, c.dataset, self.size,
            c.batch_size, drop_last_of=self.batch_size if self.drop_last else None,
        )  # fmt: skip
        g_mu, g_sigma = self.stats.mean_cov()
        self.info.update(fid_reference=where, fid_column=self.net.convention["fid_column"])
        return {"fid": fid_lib.frechet_distance(g_mu, g_sigma, mu, sigma)}


def used_images(num_images: int, batch_size: int, drop_last: bool) -> int:
    """Images that count: all, or ``floor(num_images / batch_size) * batch_size`` (drop_last)."""
    return num_images // batch_size * batch_size if drop_last else num_images


def reference_stats(
    net: EvalInception, reference: str, model_dir: str, data_path: str, dataset: str, size: int,
    batch_size: int, drop_last_of: int | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:  # fmt: skip
    """``(mu, sigma, where)`` from an ``.npz`` or from a split's images (computed once, cached).

    A split's real images (stored uint8, read as floats) are rounded back to their uint8 values
    unless the pipeline takes floats (``quantise="none"``); with ``drop_last_of=b`` only the first
    ``floor(N/b)*b`` records count, as the reference scripts' loaders.
    """
    if reference.endswith(".npz"):
        mu, sigma = fid_lib.load_reference_stats(reference)
        return mu, sigma, reference
    tag = net.pipeline.tag + (f"_drop{drop_last_of}" if drop_last_of else "")
    name = f"fid_ref_{dataset}_{reference}_{net.kind}_{tag}_{size}.npz"
    cache = os.path.join(model_dir, "eval", name)
    if os.path.exists(cache):
        mu, sigma = fid_lib.load_reference_stats(cache)
        return mu, sigma, cache
    loader = pipeline.make_loader(
        data_path, reference, global_batch_size=batch_size, image_sizes=(size,), seed=0,
        shuffle=False, num_epochs=1, random_crop=False, random_flip=False, sort_by_length=False,
        drop_remainder=False, shard_index=0, shard_count=1,
    )  # fmt: skip
    stats = fid_lib.FeatureStats(2048)
    total = pipeline.num_records(data_path, reference)
    used = used_images(total, drop_last_of, True) if drop_last_of else total
    bar = progress(used, desc=f"FID reference ({reference})")
    seen = 0
    for batch in loader:
        x = np.asarray(batch[f"image_{size}"])[: max(0, used - seen)]
        seen += len(batch["cap_lens"])
        if len(x):
            stats.update(net(x if net.pipeline.quantise == "none" else to_uint8(x))[0])
            bar.update(len(x))
    bar.close()
    stats.save_npz(cache)
    mu, sigma = stats.mean_cov()
    return mu, sigma, cache
