"""Inception Score of the generated images (10 splits), streamed (docs/evaluation.md).

The network comes from ``--inception``. Without a protocol's IS recipe its kind decides:
torchvision's or pytorch-fid's weights (logits with the bias) or the StackGAN CUB network (softmax
without the background class, full batches of 64). A protocol (``attngan_paper``) fixes the
kind, the image pipeline and whether the logits carry the ``fc`` bias.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attngan_jax.eval.evaluators.base import AllGather, Context, GeneratedBatch, Skip
from attngan_jax.metrics.inception_score import InceptionScoreAccumulator, stackgan_cub_options


class InceptionScore:
    """Accumulates the class probabilities of every image (nothing grows with the image count)."""

    name = "is"

    def __init__(self, ctx: Context):
        if not ctx.inception:
            raise Skip(
                "no Inception weights given (--inception): they cannot be downloaded here; see "
                "docs/evaluation.md for the files each convention needs"
            )
        proto = ctx.protocol
        rec = proto.is_recipe(ctx.dataset)
        if proto.is_recipes is not None and rec is None:
            raise Skip(f"--protocol={proto.name} has no published IS protocol for {ctx.dataset!r}")
        if rec is None:  # today's behaviour: the network kind decides
            self.net = ctx.network(ctx.inception, ctx.inception_kind)
            opts = stackgan_cub_options() if self.net.kind == "stackgan" else {"from_logits": True}
        else:
            self.net = ctx.network(ctx.inception, ctx.inception_kind, rec.pipeline, rec.fc_bias,
                                   required=rec.weights)  # fmt: skip
            opts = {"splits": rec.splits, "from_logits": True,
                    "drop_background": rec.drop_background,
                    "full_batches_of": rec.full_batches_of}  # fmt: skip
        if not self.net.num_classes:
            raise Skip(f"{ctx.inception} has no classifier (fc) layer: no Inception Score")
        classes = self.net.num_classes - (1 if opts.get("drop_background") else 0)
        self._new = lambda: InceptionScoreAccumulator(ctx.num_images, classes, **opts)
        try:
            self.acc = self._new()
        except ValueError as e:
            raise Skip(f"{e} (StackGAN: full batches of 64, 10 splits)") from None
        self.info = {"inception": {**self.net.convention, "is_options": opts}}

    def update(self, batch: GeneratedBatch) -> None:
        """Adds a batch's class logits."""
        start = None if batch.items is None else int(batch.items[0])  # items are consecutive
        self.acc.update(batch.inception(self.net)[1], start=start)

    def gather(self, allgather: AllGather) -> None:
        """Sums every process's per-split sums."""
        a = self.acc
        parts = allgather({"sum_p": a.sum_p, "sum_plogp": a.sum_plogp, "seen": np.int64(a.seen)})
        self.acc = self._new()
        for p in parts:
            share = self._new()
            share.sum_p, share.sum_plogp, share.seen = p["sum_p"], p["sum_plogp"], int(p["seen"])
            self.acc.merge(share)

    def result(self) -> dict[str, Any]:
        """``inception_score`` and ``inception_score_std`` over the splits."""
        mean, std = self.acc.result()
        return {"inception_score": mean, "inception_score_std": std}
