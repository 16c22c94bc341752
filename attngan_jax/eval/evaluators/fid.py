"""FID of the final stage against reference statistics, streamed (docs/evaluation.md).

The reference is an ``.npz`` (``mu``, ``sigma``) or a split name, whose real images are passed
through the same network once and cached as ``DIR/eval/fid_ref_<dataset>_<split>_<kind>_<size>.npz``.
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
        self.net = ctx.network(path, "auto" if ctx.fid_inception else ctx.inception_kind)
        if self.net.kind == "stackgan":
            raise Skip("the StackGAN CUB network is not an FID network: pass --fid_inception")
        self.ctx = ctx
        self.stats = fid_lib.FeatureStats(2048)
        self.size = ctx.image_size  # of the images fed (an earlier stage's under PerStage)
        self.info = {"fid_inception": self.net.convention}

    def update(self, batch: GeneratedBatch) -> None:
        """Adds a batch's pool features."""
        self.size = int(batch.final.shape[1])
        self.stats.update(batch.inception(self.net)[0])

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
            c.batch_size,
        )  # fmt: skip
        g_mu, g_sigma = self.stats.mean_cov()
        self.info.update(fid_reference=where, fid_column=self.net.convention["fid_column"])
        return {"fid": fid_lib.frechet_distance(g_mu, g_sigma, mu, sigma)}


def reference_stats(
    net: EvalInception, reference: str, model_dir: str, data_path: str, dataset: str, size: int,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, str]:  # fmt: skip
    """``(mu, sigma, where)`` from an ``.npz`` or from a split's images (computed once, cached)."""
    if reference.endswith(".npz"):
        mu, sigma = fid_lib.load_reference_stats(reference)
        return mu, sigma, reference
    cache = os.path.join(model_dir, "eval", f"fid_ref_{dataset}_{reference}_{net.kind}_{size}.npz")
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
