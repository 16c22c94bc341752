"""Attention localisation on the shapes dataset: does a word attend to the object it names?

The seed paper's claim is that each refinement stage attends to the image region a word
describes. On the shapes dataset the region is known: for every colour and shape word of a test
caption, :func:`attngan_jax.data.shapes.oracle.attention_localisation` finds the object the word
names in the image that stage drew and takes the share of the word's attention map inside it.
Reported per attending stage (by its image size) and word kind, beside ``*_area``: the mean share
of the map the objects cover, which is what an attention spread uniformly would score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attngan_jax.data.shapes import oracle
from attngan_jax.eval.evaluators.base import AllGather, Context, GeneratedBatch, Skip


class AttentionLocalisation:
    """Mean share of each object word's attention on its object, per attending stage."""

    name = "attention_localisation"

    def __init__(self, ctx: Context):
        if ctx.dataset != "shapes":
            raise Skip(f"only for the shapes dataset (this is {ctx.dataset!r})")
        if len(ctx.spec.image_sizes) < 2:
            raise Skip("the model has no attending stage (one stage only)")
        self.vocab = ctx.model.vocab
        self.sizes = [int(s) for s in ctx.spec.image_sizes[1:]]
        self.sums = {s: {k: [0.0, 0.0, 0] for k in oracle.WORD_KINDS} for s in self.sizes}
        self.info: dict[str, Any] = {}

    def update(self, batch: GeneratedBatch) -> None:
        """Scores every attending stage's maps against the objects that stage drew."""
        if not batch.attention:
            raise Skip("the generated batches carry no attention maps")
        for size, att, images in zip(self.sizes, batch.attention, batch.stages[1:]):
            for b in range(batch.n):
                words = [self.vocab.ixtoword[int(i)] for i in batch.ids[b, : batch.lens[b]]]
                for kind, inside, area in oracle.attention_localisation(
                    np.asarray(att[b]), words, images[b]
                ):
                    acc = self.sums[size][kind]
                    acc[0] += inside
                    acc[1] += area
                    acc[2] += 1

    def gather(self, allgather: AllGather) -> None:
        """Sums every process's shares, areas and counts."""
        mine = np.array(
            [[self.sums[s][k] for k in oracle.WORD_KINDS] for s in self.sizes], np.float64
        )  # (stages, kinds, 3)
        total = sum(allgather(mine))
        for i, s in enumerate(self.sizes):
            for j, k in enumerate(oracle.WORD_KINDS):
                inside, area, n = total[i, j]
                self.sums[s][k] = [float(inside), float(area), int(n)]

    def result(self) -> dict[str, Any]:
        """``attention_localisation``: ``{size: {kind, kind_area, n_kind}}``."""
        out: dict[str, Any] = {}
        for size, kinds in self.sums.items():
            row: dict[str, float] = {}
            for kind, (inside, area, n) in kinds.items():
                row[kind] = inside / n if n else float("nan")
                row[kind + "_area"] = area / n if n else float("nan")
                row["n_" + kind] = n
            out[str(size)] = row
        return {"attention_localisation": out}
