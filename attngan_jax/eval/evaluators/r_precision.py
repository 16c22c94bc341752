"""R-precision with the model's own DAMSM encoders (the DAMSM protocol, 10 folds).

The true caption is ranked among 99 mismatched ones: of other classes (CUB, shapes), or of other
images (COCO and custom folders, which have no classes). Only the (N, D) codes are kept; with
several processes each encodes its share and the codes are gathered in item order, so the ranking
is the one a single process computes. Images smaller than the encoders' input (an earlier stage,
:class:`~attngan_jax.eval.evaluators.base.PerStage`) are resized to it (bilinear) first.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from attngan_jax.eval.evaluators.base import AllGather, Context, GeneratedBatch, Skip
from attngan_jax.metrics.r_precision import r_precision, sample_mismatched_indices
from attngan_jax.models import factory
from attngan_jax.models.factory import ModelSpec


@functools.lru_cache(maxsize=4)
def _encoders(spec: ModelSpec):
    """The jitted (image codes, sentence codes) functions of a spec, built once."""
    text, image = factory.text_encoder(spec), factory.image_encoder(spec)
    size = int(spec.image_sizes[-1])

    @jax.jit
    def enc_img(v, x):  # x: (B, s, s, 3), s <= size
        if x.shape[1] != size:
            x = jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "bilinear")
        return image.apply(v, x, train=False)[1]

    enc_txt = jax.jit(lambda v, ids, lens: text.apply(v, ids, lens, train=False)[1])
    return enc_img, enc_txt


class RPrecision:
    """Keeps the image codes, sentence codes and classes; ranks them at the end."""

    name = "r_precision"

    def __init__(self, ctx: Context):
        if ctx.model.encoders is None:
            raise Skip("the model has no DAMSM encoders")
        self.enc_img, self.enc_txt = _encoders(ctx.spec)
        self.encoders = ctx.model.encoders
        self.per_image_class = ctx.dataset in ("coco", "custom")  # no classes: other images
        self.seed = ctx.seed
        self.codes, self.sents, self.classes, self.items = [], [], [], []
        self.info: dict[str, Any] = {}

    def update(self, batch: GeneratedBatch) -> None:
        """Encodes the batch's final images and captions."""
        self.codes.append(np.asarray(self.enc_img(self.encoders["image"], batch.final)))
        self.sents.append(np.asarray(self.enc_txt(self.encoders["text"], batch.ids, batch.lens)))
        cls = batch.record["index"] if self.per_image_class else batch.record["class_ids"]
        self.classes.append(np.asarray(cls)[: batch.n])
        items = batch.items if batch.items is not None else np.arange(batch.n) + len(self.items)
        self.items.append(np.asarray(items))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            k: np.concatenate(v)
            for k, v in (("codes", self.codes), ("sents", self.sents), ("classes", self.classes),
                         ("items", self.items))
        }  # fmt: skip

    def gather(self, allgather: AllGather) -> None:
        """Every process's codes, in item order."""
        parts = allgather(self._arrays())
        both = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = np.argsort(both["items"], kind="stable")
        self.codes, self.sents = [both["codes"][order]], [both["sents"][order]]
        self.classes, self.items = [both["classes"][order]], [both["items"][order]]

    def result(self) -> dict[str, Any]:
        """``r_precision``, its std over the folds and the candidate count."""
        a = self._arrays()
        codes, sents, cls = a["codes"], a["sents"], a["classes"]
        num = min(99, len(codes) - 1)
        try:
            idx = sample_mismatched_indices(cls, num=num, rng=np.random.default_rng(self.seed))
            rp, std = r_precision(codes, sents, sents[idx], folds=10, seed=self.seed)
        except ValueError as e:
            raise Skip(str(e)) from None
        return {"r_precision": rp, "r_precision_std": std, "r_precision_candidates": num + 1}
