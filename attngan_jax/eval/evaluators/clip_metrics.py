"""CLIP score and CLIP R-precision of the generated images, with a converted CLIP (docs/clip.md).

The CLIP model is a directory of ``python -m attngan_jax.convert.clip`` (``--clip=DIR``,
``config.evals.<name>.clip``); without one both metrics are skipped with the reason. CLIP reads
the caption an image was generated from as text: the dataset stores word ids only, so the text is
the vocabulary's words joined by spaces (lower case, punctuation dropped, as the DAMSM reads it),
not the raw caption GALIP and TISE tokenise.

* ``clip_score``: the mean over images of ``cos(CLIP image embedding, CLIP text embedding)``
  (``torch.cosine_similarity``: ``x.y / max(|x| |y|, 1e-8)``), x 100. Variants
  (``clip_score_variant``): ``galip`` (the default: GALIP's ``calc_clip_sim``, averaged over
  images) or ``clipscore`` (Hessel et al. 2021: ``2.5 * max(cos, 0)`` per image). Default
  preprocessing ``galip`` (GALIP's ``transf_to_CLIP_input``, see
  :mod:`attngan_jax.models.clip_preprocess`).
* ``clip_r_precision``: TISE / Park et al.'s protocol with CLIP as the judge: each image's true
  caption among 99 mismatched ones (other classes: CUB, shapes; other images: COCO, custom), a hit
  when the true caption has the largest cosine; mean and std over 10 folds (fractions, as
  ``r_precision``). The mismatches are drawn from the evaluated captions with ``seed``, or, under
  ``--protocol=fixed_r_precision``, are the fixed list's (:mod:`attngan_jax.eval.fixed_captions`).
  Default preprocessing ``openai`` (open_clip's ``preprocess``, which TISE applies).

Statistics combined over processes: sums and counts (score), embeddings in item order
(R-precision), as the other evaluators do.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import numpy as np

from attngan_jax.convert import clip as convert_clip
from attngan_jax.errors import InputError
from attngan_jax.eval import fixed_captions
from attngan_jax.eval.evaluators.base import AllGather, Context, GeneratedBatch, Skip
from attngan_jax.metrics.r_precision import r_precision, sample_mismatched_indices
from attngan_jax.models import clip as clip_model
from attngan_jax.models.clip_preprocess import PIPELINES, preprocess
from attngan_jax.models.clip_tokenizer import tokenize

SCORE_VARIANTS = ("galip", "clipscore")
NO_CLIP = (
    "no CLIP model given (--clip=DIR, config.evals.<name>.clip): a directory made by "
    "python -m attngan_jax.convert.clip from open_clip or OpenAI weights (docs/clip.md)"
)


# XLA:CPU's concurrency-optimised scheduler. The entry points turn it off process-wide
# (runtime/xla_flags.py: less scratch memory in the GAN steps, same speed); CLIP's encoders ran
# 3-10 % faster on one core with it on (docs/clip.md), so their compilations turn it back on.
CPU_COMPILER_OPTIONS = {"xla_cpu_enable_concurrency_optimized_scheduler": True}


class Compiled:
    """``jax.jit(fn)`` compiled once per input shapes, with :data:`CPU_COMPILER_OPTIONS` on CPU."""

    def __init__(self, fn):
        self.jitted = jax.jit(fn)
        self.cache: dict = {}

    def __call__(self, *args):
        """``fn(*args)``, compiling for these shapes and dtypes first if they are new."""
        key = tuple((np.shape(a), str(np.result_type(a))) for a in jax.tree_util.tree_leaves(args))
        if key not in self.cache:
            lowered = self.jitted.lower(*args)
            cpu = jax.default_backend() == "cpu"
            self.cache[key] = lowered.compile(
                compiler_options=CPU_COMPILER_OPTIONS if cpu else None
            )
        return self.cache[key](*args)


@functools.lru_cache(maxsize=8)
def encoders(spec: clip_model.CLIPSpec, pipeline: str) -> tuple[Compiled, Compiled]:
    """``(enc_img(v, images) -> (B, E), enc_txt(v, ids) -> (B, E))``, preprocessing inside the first.

    ``images``: (B, H, W, 3) float in [-1, 1] or uint8; ``ids``: (B, context_length) token ids.
    """
    model = clip_model.build(spec)

    def enc_img(v, x):
        return model.apply(v, preprocess(x, spec.image_size, pipeline), method="encode_image")

    def enc_txt(v, ids):
        return model.apply(v, ids, method="encode_text")

    return Compiled(enc_img), Compiled(enc_txt)


class _Clip:
    """A loaded CLIP directory with its encoders for one preprocessing pipeline."""

    def __init__(self, ctx: Context, pipeline: str):
        if not ctx.clip:
            raise Skip(NO_CLIP)
        if pipeline not in PIPELINES:
            raise InputError(f"CLIP preprocessing {pipeline!r}: choose from {PIPELINES}")
        key = ("clip", os.path.abspath(ctx.clip))
        if key not in ctx._networks:
            ctx._networks[key] = convert_clip.load(ctx.clip)
        self.spec, self.variables = ctx._networks[key]
        self.path, self.pipeline = os.path.abspath(ctx.clip), pipeline
        self.enc_img, self.enc_txt = encoders(self.spec, pipeline)
        self.vocab = ctx.model.vocab

    def texts(self, ids: np.ndarray) -> list[str]:
        """(n, T) word ids -> the captions as text (words joined by spaces, up to the first 0)."""
        return [self.vocab.decode(row) for row in np.asarray(ids)]

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """(n, E) float32 text embeddings (not normalised)."""
        return np.asarray(self.enc_txt(self.variables, tokenize(texts, self.spec.context_length)))

    def embed(self, batch: GeneratedBatch) -> tuple[np.ndarray, np.ndarray]:
        """``(image (n, E), text (n, E))`` embeddings of a batch, computed once per pipeline."""
        key = ("clip", self.path, self.pipeline)
        if key not in batch._inception:  # the batch's per-network cache
            img = np.asarray(self.enc_img(self.variables, np.asarray(batch.final)[: batch.n]))
            batch._inception[key] = (img, self.encode_texts(self.texts(batch.ids[: batch.n])))
        return batch._inception[key]

    def info(self, **extra: Any) -> dict[str, Any]:
        return {"clip": self.path, "clip_spec": self.spec.to_json(), "pipeline": self.pipeline,
                "captions": "vocabulary words joined by spaces (no raw captions stored)",
                **extra}  # fmt: skip


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``torch.cosine_similarity(a, b)`` (eps 1e-8) in float64: (n, E), (n, E) -> (n,)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-8)


class ClipScore:
    """Sums the per-image scores; ``result`` is their mean x 100."""

    name = "clip_score"

    def __init__(self, ctx: Context):
        self.clip = _Clip(ctx, ctx.clip_pipeline or "galip")
        self.variant = ctx.clip_score_variant
        if self.variant not in SCORE_VARIANTS:
            raise InputError(f"clip_score_variant {self.variant!r}: choose from {SCORE_VARIANTS}")
        self.total, self.n = 0.0, 0
        formula = ("mean cos x 100 (GALIP)" if self.variant == "galip"
                   else "mean 2.5 * max(cos, 0) x 100 (CLIPScore, Hessel et al.)")  # fmt: skip
        self.info = {"clip_score": self.clip.info(variant=self.variant, formula=formula)}

    def update(self, batch: GeneratedBatch) -> None:
        """Adds the batch's per-image scores."""
        cos = cosine(*self.clip.embed(batch))
        if self.variant == "clipscore":
            cos = 2.5 * np.maximum(cos, 0.0)
        self.total += float(cos.sum())
        self.n += len(cos)

    def gather(self, allgather: AllGather) -> None:
        """Every process's sum and count."""
        parts = allgather({"total": np.float64(self.total), "n": np.int64(self.n)})
        self.total = float(sum(float(p["total"]) for p in parts))
        self.n = int(sum(int(p["n"]) for p in parts))

    def result(self) -> dict[str, Any]:
        """``clip_score`` (x 100) and the number of images."""
        if self.n == 0:
            raise Skip("no image was scored")
        return {"clip_score": 100.0 * self.total / self.n, "clip_score_images": self.n}


class ClipRPrecision:
    """Keeps the image and true-caption embeddings; ranks them at the end."""

    name = "clip_r_precision"

    def __init__(self, ctx: Context, fixed: tuple | None = None):
        self.clip = _Clip(ctx, ctx.clip_pipeline or "openai")
        self.per_image_class = ctx.dataset in ("coco", "custom")  # no classes: other images
        self.seed, self.folds = ctx.seed, ctx.protocol.r_precision.folds
        self.quirk = ctx.protocol.r_precision.dmgan_fold_quirk
        self.fixed = fixed
        self.arrays: dict[str, list[np.ndarray]] = {k: [] for k in ("img", "txt", "cls", "items")}
        how = "drawn from the evaluated captions with the seed"
        extra = {}
        if fixed is not None:
            how = "the fixed list's"
            extra = {"list": os.path.abspath(fixed[2]), "list_sha256": fixed_captions.file_digest(fixed[2])}  # fmt: skip
        self.info = {"clip_r_precision": self.clip.info(
            mismatched=how, folds=self.folds, dmgan_fold_quirk=self.quirk, **extra)}  # fmt: skip

    def update(self, batch: GeneratedBatch) -> None:
        """Embeds the batch's images and captions."""
        img, txt = self.clip.embed(batch)
        cls = batch.record["index"] if self.per_image_class else batch.record["class_ids"]
        items = batch.items if batch.items is not None else np.arange(batch.n) + sum(
            len(i) for i in self.arrays["items"])  # fmt: skip
        for k, v in (("img", img), ("txt", txt), ("cls", np.asarray(cls)[: batch.n]),
                     ("items", np.asarray(items)[: batch.n])):  # fmt: skip
            self.arrays[k].append(v)

    def _joined(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.arrays.items()}

    def gather(self, allgather: AllGather) -> None:
        """Every process's embeddings, in item order."""
        parts = allgather(self._joined())
        both = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = np.argsort(both["items"], kind="stable")
        self.arrays = {k: [v[order]] for k, v in both.items()}

    def _mismatched(self, a: dict[str, np.ndarray]) -> tuple[np.ndarray, int]:
        """(N, M, E) embeddings of the mismatched captions, and M."""
        if self.fixed is None:
            num = min(99, len(a["img"]) - 1)
            idx = sample_mismatched_indices(a["cls"], num=num,
                                            rng=np.random.default_rng(self.seed))  # fmt: skip
            return a["txt"][idx], num
        caps, lst, _ = self.fixed
        _, mis = lst.global_ids(caps)
        mis = mis[a["items"]]  # (N, M) caption indices of the split
        uniq, inv = np.unique(mis, return_inverse=True)
        length = int(caps["cap_lens"].max())
        emb = []
        for i in range(0, len(uniq), 256):
            ids = fixed_captions.caption_ids(caps, uniq[i : i + 256], length)
            emb.append(self.clip.encode_texts(self.clip.texts(ids)))
        return np.concatenate(emb)[inv.reshape(mis.shape)], mis.shape[1]

    def result(self) -> dict[str, Any]:
        """``clip_r_precision``, its std over the folds and the candidate count."""
        a = self._joined()
        try:
            mis, m = self._mismatched(a)
            rp, std = r_precision(a["img"], a["txt"], mis, folds=self.folds, seed=self.seed,
                                  dmgan_fold_quirk=self.quirk)  # fmt: skip
        except ValueError as e:
            raise Skip(str(e)) from None
        return {"clip_r_precision": rp, "clip_r_precision_std": std,
                "clip_r_precision_candidates": m + 1}  # fmt: skip
