"""Caption fidelity of the shapes dataset: does the image show what its caption says?

The procedural oracle (:mod:`attngan_jax.data.shapes.oracle`) parses each caption and checks the
generated image for every criterion the caption names (colour, shape, object count, position, both
objects). Every stage is scored: ``caption_fidelity`` is the final stage's figures,
``caption_fidelity_per_stage`` maps each stage's image size to its figures, so the refinement
stages' contribution is a number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attngan_jax.data.shapes import oracle
from attngan_jax.eval.evaluators.base import AllGather, Context, GeneratedBatch, Skip


class _Counts:
    """Oracle hits per criterion over a stream of images."""

    def __init__(self):
        self.hits = {c: 0 for c in oracle.CRITERIA}
        self.counts = {c: 0 for c in oracle.CRITERIA}
        self.n = 0

    def add(self, images, texts) -> None:
        for image, text in zip(images, texts):
            for criterion, ok in oracle.check(image, text).items():
                self.counts[criterion] += 1
                self.hits[criterion] += int(ok)
        self.n += len(texts)

    def state(self) -> dict[str, np.ndarray]:
        return {
            "hits": np.array([self.hits[c] for c in oracle.CRITERIA], np.int64),
            "counts": np.array([self.counts[c] for c in oracle.CRITERIA], np.int64),
            "n": np.int64(self.n),
        }

    def set_total(self, states: list[dict[str, np.ndarray]]) -> None:
        total = {k: sum(np.asarray(st[k]) for st in states) for k in states[0]}
        self.hits = dict(zip(oracle.CRITERIA, total["hits"].tolist()))
        self.counts = dict(zip(oracle.CRITERIA, total["counts"].tolist()))
        self.n = int(total["n"])

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {"n": self.n}
        for c in oracle.CRITERIA:
            k = self.counts[c]
            out[c] = self.hits[c] / k if k else float("nan")
            out["n_" + c] = k
        return out


class CaptionFidelity:
    """Counts the oracle's hits per criterion, for every stage."""

    name = "caption_fidelity"

    def __init__(self, ctx: Context):
        if ctx.dataset != "shapes":
            raise Skip(f"only for the shapes dataset (this is {ctx.dataset!r})")
        self.vocab = ctx.model.vocab
        self.sizes = [int(s) for s in ctx.spec.image_sizes]
        self.stages = [_Counts() for _ in self.sizes]
        self.info: dict[str, Any] = {}

    def update(self, batch: GeneratedBatch) -> None:
        """Scores every stage's images of the batch against their captions."""
        texts = [self.vocab.decode(batch.ids[b, : batch.lens[b]]) for b in range(batch.n)]
        stages = batch.stages or (batch.final,)
        counts = self.stages[-len(stages) :]
        for images, c in zip(stages, counts):
            c.add(images[: batch.n], texts)

    def gather(self, allgather: AllGather) -> None:
        """Sums every process's hits and counts, stage by stage."""
        states = allgather([c.state() for c in self.stages])
        for i, c in enumerate(self.stages):
            c.set_total([st[i] for st in states])

    def result(self) -> dict[str, Any]:
        """``caption_fidelity`` (final stage) and ``caption_fidelity_per_stage`` ({size: ...})."""
        per_stage = {str(s): c.result() for s, c in zip(self.sizes, self.stages) if c.n}
        return {
            "caption_fidelity": self.stages[-1].result(),
            "caption_fidelity_per_stage": per_stage,
        }
