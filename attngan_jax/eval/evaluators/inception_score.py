"""Inception Score of the generated images (10 splits), streamed (docs/evaluation.md).

The network and its convention come from ``--inception``: torchvision's or pytorch-fid's weights
(logits, ``from_logits``) or the StackGAN CUB network (softmax without the background class, full
batches of 64).
"""

from __future__ import annotations

from typing import Any

from attngan_jax.eval.evaluators.base import Context, GeneratedBatch, Skip
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
        self.net = ctx.network(ctx.inception, ctx.inception_kind)
        if not self.net.num_classes:
            raise Skip(f"{ctx.inception} has no classifier (fc) layer: no Inception Score")
        opts = stackgan_cub_options() if self.net.kind == "stackgan" else {"from_logits": True}
        classes = self.net.num_classes - (1 if opts.get("drop_background") else 0)
        try:
            self.acc = InceptionScoreAccumulator(ctx.num_images, classes, **opts)
        except ValueError as e:
            raise Skip(f"{e} (StackGAN: full batches of 64, 10 splits)") from None
        self.info = {"inception": self.net.convention}

    def update(self, batch: GeneratedBatch) -> None:
        """Adds a batch's class logits."""
        self.acc.update(batch.inception(self.net)[1])

    def result(self) -> dict[str, Any]:
        """``inception_score`` and ``inception_score_std`` over the splits."""
        mean, std = self.acc.result()
        return {"inception_score": mean, "inception_score_std": std}
