"""R-precision with the model's own DAMSM encoders (the DAMSM protocol, 10 folds).

The true caption is ranked among 99 mismatched ones: of other classes (CUB, shapes), or of other
images (COCO and custom folders, which have no classes). Only the (N, D) codes are kept; with
several processes each encodes its share and the codes are gathered in item order, so the ranking
is the one a single process computes. Images smaller than the encoders' input (an earlier stage,
:class:`~attngan_jax.eval.evaluators.base.PerStage`) are resized to it (bilinear) first.
:class:`FixedRPrecision` is the ``fixed_r_precision`` protocol's: a saved list and a named DAMSM.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any

import jax
import numpy as np

from attngan_jax import model_dir
from attngan_jax.data.vocab import Vocabulary
from attngan_jax.errors import InputError
from attngan_jax.eval import fixed_captions
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


def _batch_items(batch: GeneratedBatch, seen: int) -> np.ndarray:
    """The batch's item numbers (this process's rows), or the next ``n`` after ``seen``."""
    return np.asarray(batch.items) if batch.items is not None else np.arange(batch.n) + seen


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
        self.quirk = ctx.protocol.r_precision.dmgan_fold_quirk
        self.codes, self.sents, self.classes, self.items = [], [], [], []
        self.info: dict[str, Any] = {"r_precision": {
            "mode": "model_damsm", "damsm": "the evaluated model's own (biased towards it)",
            "mismatched": "drawn per run from the seed", "dmgan_fold_quirk": self.quirk}}  # fmt: skip

    def update(self, batch: GeneratedBatch) -> None:
        """Encodes the batch's final images and captions."""
        self.codes.append(np.asarray(self.enc_img(self.encoders["image"], batch.final)))
        self.sents.append(np.asarray(self.enc_txt(self.encoders["text"], batch.ids, batch.lens)))
        cls = batch.record["index"] if self.per_image_class else batch.record["class_ids"]
        self.classes.append(np.asarray(cls)[: batch.n])
        self.items.append(_batch_items(batch, sum(len(i) for i in self.items)))

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
            rp, std = r_precision(codes, sents, sents[idx], folds=10, seed=self.seed,
                                  dmgan_fold_quirk=self.quirk)  # fmt: skip
        except ValueError as e:
            raise Skip(str(e)) from None
        return {"r_precision": rp, "r_precision_std": std, "r_precision_candidates": num + 1}


class FixedRPrecision:
    """R-precision on a fixed saved caption list with a named DAMSM (``fixed_r_precision``).

    The images are generated from the list's captions (``fixed_list_batches``); every caption of
    the split is encoded once by the named text encoder, and each image's code (named image
    encoder) is ranked against its caption and the list's 99 mismatches.
    """

    name = "r_precision"

    def __init__(self, ctx: Context, caps: dict, lst, list_path: str):
        ddir = model_dir.resolve(ctx.damsm)
        if not model_dir.has_damsm(ddir):
            raise InputError(f"--damsm={ctx.damsm}: {ddir} has no DAMSM encoders")
        spec = model_dir.load_spec(ddir)
        vocab = Vocabulary.load(os.path.join(ddir, "vocab.json"))
        if vocab.ixtoword != ctx.model.vocab.ixtoword:
            raise InputError(
                f"--damsm={ctx.damsm}: its vocabulary ({len(vocab)} words) is not the dataset's "
                f"({len(ctx.model.vocab)}): the DAMSM must read the same word ids"
            )
        enc = jax.tree_util.tree_map(np.asarray, model_dir.load_damsm(ddir))
        text, image = factory.text_encoder(spec), factory.image_encoder(spec)
        self.enc_img = jax.jit(lambda v, x: image.apply(v, x, train=False)[1])
        enc_txt = jax.jit(lambda v, ids, lens: text.apply(v, ids, lens, train=False)[1])
        self.image_vars = enc["image"]
        # every caption of the split, once: (C, D)
        length = int(caps["cap_lens"].max())
        sents = []
        for i in range(0, len(caps["cap_lens"]), 256):
            ids = np.arange(i, min(i + 256, len(caps["cap_lens"])))
            tok = fixed_captions.caption_ids(caps, ids, length)
            sents.append(np.asarray(enc_txt(enc["text"], tok, caps["cap_lens"][ids])))
        self.sents = np.concatenate(sents)
        self.query, self.mismatched = lst.global_ids(caps)  # (N,), (N, M)
        self.rec = ctx.protocol.r_precision
        self.seed = ctx.seed
        self.codes: list[np.ndarray] = []
        self.items: list[np.ndarray] = []
        self.info: dict[str, Any] = {"r_precision": {
            "mode": "fixed_list", "list": os.path.abspath(list_path),
            "list_sha256": fixed_captions.file_digest(list_path), "list_meta": lst.meta,
            "damsm": os.path.abspath(ddir), "damsm_sha256": _digest(enc),
            "dmgan_fold_quirk": self.rec.dmgan_fold_quirk, "fold_shuffle_seed": self.seed,
        }}  # fmt: skip

    def update(self, batch: GeneratedBatch) -> None:
        """Encodes the batch's final images with the named image encoder."""
        self.codes.append(np.asarray(self.enc_img(self.image_vars, batch.final)))
        self.items.append(_batch_items(batch, sum(len(i) for i in self.items)))

    def gather(self, allgather: AllGather) -> None:
        """Every process's codes, in item (list entry) order."""
        parts = allgather(
            {"codes": np.concatenate(self.codes), "items": np.concatenate(self.items)}
        )
        codes = np.concatenate([p["codes"] for p in parts])
        items = np.concatenate([p["items"] for p in parts])
        order = np.argsort(items, kind="stable")
        self.codes, self.items = [codes[order]], [items[order]]

    def result(self) -> dict[str, Any]:
        """``r_precision``, its std over the folds and the candidate count."""
        codes = np.concatenate(self.codes)
        n = len(codes)
        try:
            rp, std = r_precision(codes, self.sents[self.query[:n]],
                                  self.sents[self.mismatched[:n]], folds=self.rec.folds,
                                  seed=self.seed, dmgan_fold_quirk=self.rec.dmgan_fold_quirk)  # fmt: skip
        except ValueError as e:
            raise Skip(str(e)) from None
        m = self.mismatched.shape[1]
        return {"r_precision": rp, "r_precision_std": std, "r_precision_candidates": m + 1}


def _digest(tree) -> str:
    """sha256 of a parameter tree (leaf paths and values): names the DAMSM that judged."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()
