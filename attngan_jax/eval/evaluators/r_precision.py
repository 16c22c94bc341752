"""R-precision with the model directory's own DAMSM encoders (the DAMSM protocol, 10 folds).

The true caption is ranked among 99 mismatched ones: of other classes (CUB, shapes), or of other
images (COCO and custom folders, which have no classes). Only the (N, D) codes are kept.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from attngan_jax import model_dir
from attngan_jax.eval.evaluators.base import Context, GeneratedBatch, Skip
from attngan_jax.metrics.r_precision import r_precision, sample_mismatched_indices
from attngan_jax.models import factory


class RPrecision:
    """Keeps the image codes, sentence codes and classes; ranks them at the end."""

    name = "r_precision"

    def __init__(self, ctx: Context):
        if not model_dir.has_damsm(ctx.model_dir):
            raise Skip("the model directory has no DAMSM encoders")
        text, image = factory.text_encoder(ctx.spec), factory.image_encoder(ctx.spec)
        self.enc_img = jax.jit(lambda v, x: image.apply(v, x, train=False)[1])
        self.enc_txt = jax.jit(lambda v, ids, lens: text.apply(v, ids, lens, train=False)[1])
        self.encoders = ctx.model.encoders
        self.per_image_class = ctx.dataset in ("coco", "custom")  # no classes: other images
        self.seed = ctx.seed
        self.codes, self.sents, self.classes = [], [], []
        self.info: dict[str, Any] = {}

    def update(self, batch: GeneratedBatch) -> None:
        """Encodes the batch's final images and captions."""
        self.codes.append(np.asarray(self.enc_img(self.encoders["image"], batch.final)))
        self.sents.append(np.asarray(self.enc_txt(self.encoders["text"], batch.ids, batch.lens)))
        cls = batch.record["index"] if self.per_image_class else batch.record["class_ids"]
        self.classes.append(np.asarray(cls)[: batch.n])

    def result(self) -> dict[str, Any]:
        """``r_precision``, its std over the folds and the candidate count."""
        codes, sents = np.concatenate(self.codes), np.concatenate(self.sents)
        cls = np.concatenate(self.classes)
        num = min(99, len(codes) - 1)
        try:
            idx = sample_mismatched_indices(cls, num=num, rng=np.random.default_rng(self.seed))
            rp, std = r_precision(codes, sents, sents[idx], folds=10, seed=self.seed)
        except ValueError as e:
            raise Skip(str(e)) from None
        return {"r_precision": rp, "r_precision_std": std, "r_precision_candidates": num + 1}
