"""Caption fidelity of the shapes dataset: does the image show what its caption says?

The procedural oracle (:mod:`attngan_jax.data.shapes.oracle`) parses each caption and checks the
generated image for every criterion the caption names (colour, shape, position, both objects).
"""

from __future__ import annotations

from typing import Any

from attngan_jax.data.shapes import oracle
from attngan_jax.eval.evaluators.base import Context, GeneratedBatch, Skip


class CaptionFidelity:
    """Counts the oracle's hits per criterion."""

    name = "caption_fidelity"

    def __init__(self, ctx: Context):
        if ctx.dataset != "shapes":
            raise Skip(f"only for the shapes dataset (this is {ctx.dataset!r})")
        self.vocab = ctx.model.vocab
        self.hits: dict[str, float] = {}
        self.n = 0
        self.info: dict[str, Any] = {}

    def update(self, batch: GeneratedBatch) -> None:
        """Scores the batch's final images against their captions."""
        texts = [self.vocab.decode(batch.ids[b, : batch.lens[b]]) for b in range(batch.n)]
        r = oracle.score(batch.final, texts)
        for c in oracle.CRITERIA:
            if r["n_" + c]:
                self.hits[c] = self.hits.get(c, 0.0) + r[c] * r["n_" + c]
            self.hits["n_" + c] = self.hits.get("n_" + c, 0) + r["n_" + c]
        self.n += batch.n

    def result(self) -> dict[str, Any]:
        """``caption_fidelity``: per criterion the hit rate and the count it is over."""
        cf: dict[str, float] = {"n": self.n}
        for c in oracle.CRITERIA:
            k = self.hits.get("n_" + c, 0)
            cf[c] = self.hits.get(c, 0.0) / k if k else float("nan")
            cf["n_" + c] = k
        return {"caption_fidelity": cf}
