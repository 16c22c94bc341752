"""AttnGAN losses (``code/miscc/losses.py``, ref. §8): DAMSM word/sentence losses, GAN losses, KL.

Pure functions with explicit arguments (no config objects), so a training step composes them in
one jitted function. Layouts follow the library: region features ``(B, h, w, D)``, word features
``(B, T, D)`` with any ``T >= max(cap_lens)`` (positions ``t >= cap_lens[b]`` are ignored).

Faithful choices (ref. §16.6, §16.7, §16.18):

* ``words_loss`` omits the ``1/γ2`` exponent of paper Eq. (10), as the code does.
* The DAMSM losses are batch means (paper: sums); the D loss has the mismatched-pair term and the
  (real)/2 + (fake + wrong)/3 weights; the G adversarial loss has no ½ factors (paper Eq. 4/5).
* BCE is computed from logits with ``log_sigmoid``, clamped at −100 like modern ``nn.BCELoss``.
  PyTorch 0.3 used ``log(p + 1e-12)`` instead; the two differ only when D saturates
  (|logit| ≳ 20), by at most ~1e-12/p, and never produce inf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from attngan_jax.types import Array, PyTree

_EPS = 1e-8  # cosine-similarity clamp of the original


def _safe_norm(x: Array, axis: int = -1, keepdims: bool = False) -> Array:
    """L2 norm whose gradient at 0 is 0 (as ``torch.norm``), not NaN."""
    sq = jnp.sum(jnp.square(x), axis=axis, keepdims=keepdims)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def cosine_similarity(x1: Array, x2: Array, axis: int = -1, eps: float = _EPS) -> Array:
    """``sum(x1 * x2) / max(|x1| * |x2|, eps)`` along ``axis`` (ref. §8.1; broadcasting inputs)."""
    num = jnp.sum(x1 * x2, axis=axis)
    return num / jnp.maximum(_safe_norm(x1, axis) * _safe_norm(x2, axis), eps)


def class_mask(class_ids: Array) -> Array:
    """``M[i, j] = class_ids[i] == class_ids[j] and i != j`` (B, B) bool (ref. §8.2)."""
    b = class_ids.shape[0]
    same = class_ids[:, None] == class_ids[None, :]
    return same & ~jnp.eye(b, dtype=bool)


def matching_cross_entropy(
    scores: Array, class_ids: Array | None, hard: Array | None = None
) -> tuple[Array, Array]:
    """Cross-entropies of a (B, B) score matrix with the diagonal as labels (paper Eq. 11-13).

    Same-class off-diagonal pairs are set to −inf (``where``: no gradient flows to them, as the
    original's fill on ``.data``); the diagonal is never masked. CE is ``logsumexp(row) −
    row[label]`` (a one-hot product would give 0·(−inf) = NaN).

    Args:
        scores: (B, B) similarity logits, rows = images, columns = texts.
        class_ids: (B,) int class ids, or None for no masking.
        hard: optional (B,) or (B, K) logits of one (K) extra negative caption(s) per image
            (row), −inf where a row has none; they join the rows' softmax (``loss0``) only. Not in
            the original.

    Returns:
        ``(loss0, loss1)``: mean CE over rows of ``scores`` and of ``scores.T``.
    """
    if class_ids is not None:
        scores = jnp.where(class_mask(jnp.asarray(class_ids)), -jnp.inf, scores)
    diag = jnp.diagonal(scores)  # (B,)
    if hard is not None:
        hard = hard[:, None] if hard.ndim == 1 else hard  # (B, K)
    rows = scores if hard is None else jnp.concatenate([scores, hard], axis=1)
    loss0 = jnp.mean(jax.nn.logsumexp(rows, axis=1) - diag)
    loss1 = jnp.mean(jax.nn.logsumexp(scores, axis=0) - diag)
    return loss0, loss1


def sent_loss(
    cnn_code: Array,
    sent_emb: Array,
    class_ids: Array | None,
    gamma3: float,
    hard: Array | None = None,
) -> tuple[Array, Array]:
    """DAMSM sentence loss (paper Eq. 11-13 with Q = image, D = sentence vectors; ref. §8.3).

    Args:
        cnn_code: global image features (B, D).
        sent_emb: sentence embeddings (B, D).
        class_ids: (B,) int class ids for masking same-class pairs, or None.
        gamma3: GAMMA3 (10).
        hard: optional (B, K) scores of extra negative captions per image
            (:func:`hard_caption_scores`); not in the original.

    Returns:
        ``(loss0, loss1)``: each image picks its sentence / each sentence picks its image (means).
    """
    return matching_cross_entropy(sentence_scores(cnn_code, sent_emb, gamma3), class_ids, hard)


def sentence_scores(cnn_code: Array, sent_emb: Array, gamma3: float) -> Array:
    """``γ3 · cos(image b, sentence i)`` (B, B) float32, rows images (paper Eq. 11 with Eq. 12)."""
    scores = gamma3 * cosine_similarity(cnn_code[:, None, :], sent_emb[None, :, :])
    return scores.astype(jnp.float32)


def word_mask(cap_lens: Array, t: int) -> Array:
    """``(B, T)`` bool, True at *valid* word positions ``t < cap_lens[b]``."""
    return jnp.arange(t)[None, :] < jnp.asarray(cap_lens)[:, None]


def pairwise_word_region_attention(
    img_features: Array, words_emb: Array, valid: Array, gamma1: float
) -> tuple[Array, Array]:
    """DAMSM attention (``func_attention``, ref. §5.2) for every (image b, caption i) pair at once.

    Args:
        img_features: region features (B, h, w, D).
        words_emb: word features (B, T, D).
        valid: (B, T) bool, True at real words.
        gamma1: GAMMA1 (4 birds).

    Returns:
        ``(context, attn)``: ``context[b, i, t]`` (B, B, T, D) is the region-context vector of word
        t of caption i in image b (Eq. 9); ``attn[b, i, t]`` (B, B, T, h*w) the attention of that
        word over image b's regions. Rows of padded words are finite but meaningless.
    """
    bsz, h, w, d = img_features.shape
    regions = img_features.reshape(bsz, h * w, d)  # (B, L, D)
    s = jnp.einsum("bld,itd->bilt", regions, words_emb)  # (B, B, L, T), Eq. (7)
    s = jnp.where(valid[None, :, None, :], s, -jnp.inf)
    s = jax.nn.softmax(s, axis=-1)  # over words, Eq. (8)
    s = jnp.swapaxes(s, -1, -2) * gamma1  # (B, B, T, L)
    attn = jax.nn.softmax(s, axis=-1)  # over regions, Eq. (9)
    context = jnp.einsum("bitl,bld->bitd", attn, regions)  # (B, B, T, D)
    return context, attn


def word_level_scores(
    img_features: Array,
    words_emb: Array,
    cap_lens: Array,
    gamma1: float,
    gamma2: float,
    gamma3: float,
) -> tuple[Array, Array]:
    """``γ3 · R(Q_b, D_i)`` for every image b and caption i (paper Eq. 7-10; ref. §8.4).

    Args:
        img_features: region features (B, h, w, D).
        words_emb: word features (I, T, D) of I captions (usually I = B).
        cap_lens: (I,) caption lengths, each >= 1.
        gamma1: GAMMA1, sharpness of the attention over regions, Eq. (9).
        gamma2: GAMMA2, weight of the word scores in Eq. (10).
        gamma3: GAMMA3, smoothing of the posterior, Eq. (11).

    Returns:
        ``(scores, attn)``: scores (B, I), rows images, columns captions; ``attn`` (B, I, T, h*w).
    """
    valid = word_mask(cap_lens, words_emb.shape[1])  # (I, T)
    context, attn = pairwise_word_region_attention(img_features, words_emb, valid, gamma1)
    r = cosine_similarity(words_emb[None, :, :, :], context)  # (B, I, T): R(c_t, e_t)
    # Eq. (10) without the 1/γ2 exponent: R[b, i] = log Σ_t exp(γ2 r[b, i, t]) over real words.
    rr = jnp.where(valid[None, :, :], gamma2 * r, -jnp.inf)
    return gamma3 * jax.nn.logsumexp(rr, axis=-1), attn


def words_loss(
    img_features: Array,
    words_emb: Array,
    cap_lens: Array,
    class_ids: Array | None,
    gamma1: float,
    gamma2: float,
    gamma3: float,
    hard: Array | None = None,
) -> tuple[Array, Array, Array]:
    """DAMSM word loss (paper Eq. 7-10 and 11-13 with the word-level score; ref. §8.4).

    Vectorised over all (image, caption) pairs; padded words get −inf before the softmax over
    words and are left out of the log-sum-exp of Eq. (10), so they change nothing.

    Args:
        img_features: region features (B, h, w, D) (17×17 from the DAMSM image encoder).
        words_emb: word features (B, T, D), T >= max(cap_lens).
        cap_lens: (B,) caption lengths, each >= 1.
        class_ids: (B,) class ids for masking, or None.
        gamma1: GAMMA1 (4 birds), sharpness of the attention over regions, Eq. (9).
        gamma2: GAMMA2 (5), weight of the word scores in Eq. (10).
        gamma3: GAMMA3 (10), smoothing of the posterior, Eq. (11).
        hard: optional (B, K) word-level scores of extra negative captions per image
            (:func:`hard_caption_scores`); not in the original.

    Returns:
        ``(loss0, loss1, att_maps)``: mean CEs (images pick captions / captions pick images) and
        ``att_maps`` (B, T, h, w), the attention of caption i's words over *its own* image i
        (zero at padded words).
    """
    bsz, h, w, _ = img_features.shape
    t = words_emb.shape[1]
    valid = word_mask(cap_lens, t)  # (B, T)
    scores, attn = word_level_scores(img_features, words_emb, cap_lens, gamma1, gamma2, gamma3)
    loss0, loss1 = matching_cross_entropy(scores.astype(jnp.float32), class_ids, hard)
    own = attn[jnp.arange(bsz), jnp.arange(bsz)]  # (B, T, L): caption i over image i
    att_maps = jnp.where(valid[:, :, None], own, 0.0).reshape(bsz, t, h, w)
    return loss0, loss1, att_maps


def hard_caption_scores(
    region_features: Array,
    cnn_code: Array,
    hard_words: Array,
    hard_sent: Array,
    cap_lens: Array,
    hard_valid: Array,
    gamma1: float,
    gamma2: float,
    gamma3: float,
) -> tuple[Array, Array]:
    """Word- and sentence-level scores of each image against its own hard negative captions.

    Not in the original: hard captions (the image's own caption with its position words swapped,
    a colour or a shape renamed) join the image's row of the matching softmax (``loss0``).

    Args:
        region_features: (B, h, w, D) image regions.
        cnn_code: (B, D) global image codes.
        hard_words: (K, B, T, D) or (B, T, D) word features of K hard captions per image.
        hard_sent: (K, B, D) or (B, D) their sentence vectors.
        cap_lens: (B,) their lengths (the true captions' lengths).
        hard_valid: (K, B) or (B,) bool, False where an image has no such caption.
        gamma1: GAMMA1.
        gamma2: GAMMA2.
        gamma3: GAMMA3.

    Returns:
        ``(word_scores (B, K), sentence_scores (B, K))`` float32, −inf where not valid.
    """
    if hard_sent.ndim == 2:  # one kind
        hard_words, hard_sent, hard_valid = hard_words[None], hard_sent[None], hard_valid[None]

    def own_hard(f, w, n):  # one image against one caption
        return word_level_scores(f[None], w[None], n[None], gamma1, gamma2, gamma3)[0][0, 0]

    per_kind = jax.vmap(own_hard, in_axes=(None, 0, None))  # over K
    hard_w = jax.vmap(per_kind, in_axes=(0, 1, 0), out_axes=1)(
        region_features, hard_words, cap_lens
    )  # (K, B)
    hard_s = gamma3 * cosine_similarity(cnn_code[None], hard_sent)  # (K, B)
    f32 = jnp.float32
    hard_w = jnp.where(hard_valid, hard_w, -jnp.inf).astype(f32).T
    hard_s = jnp.where(hard_valid, hard_s, -jnp.inf).astype(f32).T
    return hard_w, hard_s


def mode_seeking_loss(
    fakes_a: tuple[Array, ...],
    fakes_b: tuple[Array, ...],
    z_a: Array,
    z_b: Array,
    eps: float = 1e-5,
) -> Array:
    """MSGAN's mode-seeking term (Mao et al., CVPR 2019, eq. 3), summed over the stages.

    ``1 / (mean|I_a - I_b| / mean|z_a - z_b| + eps)`` per stage, where ``I_a``, ``I_b`` are the
    images of the same captions from noises ``z_a``, ``z_b`` (their official code's form).

    Args:
        fakes_a, fakes_b: per stage (B, S, S, 3) images of the same captions.
        z_a, z_b: (B, z_dim) their noises.
        eps: keeps the ratio finite when the images are equal.

    Returns:
        Scalar; small when the images move with the noise.
    """
    dz = jnp.mean(jnp.abs(z_a - z_b))
    total = jnp.zeros((), jnp.float32)
    for a, b in zip(fakes_a, fakes_b):
        ratio = jnp.mean(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32))) / dz
        total = total + 1.0 / (ratio + eps)
    return total


def kl_loss(mu: Array, logvar: Array) -> Array:
    """Conditioning-augmentation KL to N(0, I): ``-0.5 mean(1 + logvar - mu² - exp(logvar))``.

    Args:
        mu: (B, c_dim) CA means.
        logvar: (B, c_dim) CA log-variances.

    Returns:
        Scalar (mean over all B × c_dim elements, ref. §8.7).
    """
    return -0.5 * jnp.mean(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar))


def bce_terms(logits: Array, target: float | Array) -> Array:
    """Element-wise ``nn.BCELoss(reduction="none")(sigmoid(logits), target)``, logs clamped at −100."""
    log_p = jnp.maximum(jax.nn.log_sigmoid(logits), -100.0)
    log_1mp = jnp.maximum(jax.nn.log_sigmoid(-logits), -100.0)
    return -(target * log_p + (1.0 - target) * log_1mp)


def bce_with_logits(logits: Array, target: float | Array) -> Array:
    """``nn.BCELoss()(sigmoid(logits), target)``: mean over elements, logs clamped at −100."""
    return jnp.mean(bce_terms(logits, target))


# A discriminator "apply" closure: ``d_apply(variables, *args, method=name, mutable=[...] or
# False)`` with the semantics of ``flax.linen.Module.apply`` for a
# :class:`attngan_jax.models.discriminator.Discriminator` (methods ``__call__``, ``cond_logits``,
# ``uncond_logits``). Usually ``d_apply = discriminator.apply``.
DApply = Callable[..., Any]


def _d_pass(d_apply: DApply, params, stats, args, method: str, train: bool, **kw):
    """One D call as its own BN batch(es); returns (output, updated batch_stats)."""
    variables = {"params": params, "batch_stats": stats}
    if train:
        out, upd = d_apply(variables, *args, method=method, mutable=["batch_stats"], **kw)
        return out, upd["batch_stats"]
    return d_apply(variables, *args, method=method, **kw), stats


def _interleave(a: Array, b: Array) -> Array:
    """(B, ...), (B, ...) -> (2B, ...) with rows a0, b0, a1, b1, ... (two BN groups)."""
    return jnp.stack([a, b], axis=1).reshape(2 * a.shape[0], *a.shape[1:])


def _deinterleave(x: Array) -> tuple[Array, Array]:
    """Inverse of :func:`_interleave`."""
    x = x.reshape(x.shape[0] // 2, 2, *x.shape[1:])
    return x[:, 0], x[:, 1]


def discriminator_loss(
    d_apply: DApply,
    params: PyTree,
    batch_stats: PyTree,
    real_images: Array,
    fake_images: Array,
    sent_emb: Array,
    uncond: bool,
    train: bool = True,
    hard_sent_emb: Array | None = None,
    hard_valid: Array | None = None,
    dup_images: Array | None = None,
) -> tuple[Array, PyTree, dict[str, Array]]:
    """The original's ``discriminator_loss`` (ref. §8.5), one D stage.

    Real, fake, and the three conditional calls are separate BatchNorm batches, with the running
    statistics updated in the original's order (real trunk, fake trunk, cond real, cond fake, cond
    wrong, uncond real/fake). Real and fake go through the trunk, and then the conditional head,
    as one interleaved batch of 2B with ``bn_groups=2`` (each half normalised with its own
    statistics): the same values as two calls up to float32 summation order, and one convolution
    of 2B instead of two of B, which is faster (docs/performance.md). The wrong pair is
    ``(real_code[:B-1], sent_emb[1:])``. ``fake_images`` is detached (``stop_gradient``).

    Args:
        d_apply: the D's apply function (see ``DApply``).
        params: the D's ``params``.
        batch_stats: the D's ``batch_stats`` (threaded through the five BN batches).
        real_images: (B, S, S, 3).
        fake_images: (B, S, S, 3), detached here.
        sent_emb: (B, nef) raw sentence embeddings (the D condition).
        uncond: whether the D has an unconditional head.
        train: BatchNorm mode (True in training).
        hard_sent_emb: optional (B, nef) sentence embeddings of *hard* mismatched captions, one per
            real image (e.g. its caption with left/right swapped). Not in the original: each
            adds a term BCE(cond(real_b, hard_b), 0) (a further BN batch), averaged over the
            rows where ``hard_valid``, with the weight of the wrong term.
            (K, B, nef) gives K hard captions per image (one BN batch of K*B).
        hard_valid: (B,) or (K, B) bool, the rows that have a hard caption (required with it).
        dup_images: optional (B, S, S, 3) real images with their objects drawn twice
            (:func:`attngan_jax.data.negatives.duplicate_objects`), with their own captions. Not in
            the original: a further trunk pass (BN batch) and the term
            (BCE(cond(dup, sent), 0) + BCE(uncond(dup), 0)) / 2 with the weight of the fake term.

    Returns:
        ``(errD, new_batch_stats, logits)``; errD =
        (BCE(uncond_real,1) + BCE(cond_real,1))/2 + (BCE(uncond_fake,0) + BCE(cond_fake,0) +
        BCE(cond_wrong,0))/3, or cond_real + (cond_fake + cond_wrong)/2 without the uncond head
        (plus the hard term, when given). ``logits`` maps ``cond_real``, ``cond_fake`` (B,),
        ``cond_wrong`` (B-1,), with the uncond head ``uncond_real``, ``uncond_fake`` (B,), and
        with hard captions ``cond_hard`` (B,) to logits.
    """
    fake_images = jax.lax.stop_gradient(fake_images)
    bsz = real_images.shape[0]
    st = batch_stats
    pair = _interleave(real_images, fake_images)  # (2B, S, S, 3): real_0, fake_0, real_1, ...
    codes, st = _d_pass(d_apply, params, st, (pair, train), "__call__", train, bn_groups=2)
    real_code, _ = _deinterleave(codes)  # (B, 4, 4, 8 ndf)
    lg = {}
    both, st = _d_pass(
        d_apply,
        params,
        st,
        (codes, _interleave(sent_emb, sent_emb), train),
        "cond_logits",
        train,
        bn_groups=2,
    )
    lg["cond_real"], lg["cond_fake"] = _deinterleave(both)
    wrong = (real_code[: bsz - 1], sent_emb[1:bsz], train)
    lg["cond_wrong"], st = _d_pass(d_apply, params, st, wrong, "cond_logits", train)
    cond_real = bce_with_logits(lg["cond_real"], 1.0)
    cond_fake = bce_with_logits(lg["cond_fake"], 0.0)
    cond_wrong = bce_with_logits(lg["cond_wrong"], 0.0)
    if uncond:
        both, st = _d_pass(d_apply, params, st, (codes,), "uncond_logits", train)  # no BN here
        lg["uncond_real"], lg["uncond_fake"] = _deinterleave(both)
        real = bce_with_logits(lg["uncond_real"], 1.0)
        fake = bce_with_logits(lg["uncond_fake"], 0.0)
        err = (real + cond_real) / 2.0 + (fake + cond_fake + cond_wrong) / 3.0
    else:
        err = cond_real + (cond_fake + cond_wrong) / 2.0
    if hard_sent_emb is not None:
        if hard_valid is None:
            raise ValueError("hard_sent_emb needs hard_valid (B,) bool")
        if hard_sent_emb.ndim == 2:  # one hard caption per image
            hard_sent_emb, hard_valid = hard_sent_emb[None], hard_valid[None]
        k = hard_sent_emb.shape[0]
        codes_k = jnp.tile(real_code, (k,) + (1,) * (real_code.ndim - 1))  # (K*B, ...)
        sents_k = hard_sent_emb.reshape(k * bsz, -1)
        lg["cond_hard"], st = _d_pass(
            d_apply, params, st, (codes_k, sents_k, train), "cond_logits", train
        )
        per_row = bce_terms(lg["cond_hard"], 0.0).reshape(k * bsz, -1).mean(axis=1)  # (K*B,)
        w = hard_valid.reshape(k * bsz).astype(per_row.dtype)
        cond_hard = jnp.sum(w * per_row) / jnp.maximum(jnp.sum(w), 1.0)
        err = err + cond_hard / (3.0 if uncond else 2.0)
    if dup_images is not None:
        dup_code, st = _d_pass(d_apply, params, st, (dup_images, train), "__call__", train)
        lg["cond_dup"], st = _d_pass(
            d_apply, params, st, (dup_code, sent_emb, train), "cond_logits", train
        )
        dup = bce_with_logits(lg["cond_dup"], 0.0)
        if uncond:
            lg["uncond_dup"], st = _d_pass(d_apply, params, st, (dup_code,), "uncond_logits", train)
            dup = (dup + bce_with_logits(lg["uncond_dup"], 0.0)) / 2.0
        err = err + dup / (3.0 if uncond else 2.0)
    return err, st, lg


def generator_adversarial_loss(
    d_apply: DApply,
    params: PyTree,
    batch_stats: PyTree,
    fake_images: Array,
    sent_emb: Array,
    uncond: bool,
    train: bool = True,
) -> tuple[Array, PyTree, dict[str, Array]]:
    """One stage of the G's adversarial loss (ref. §8.6): BCE(cond(fake), 1) + BCE(uncond(fake), 1).

    Gradients flow into ``fake_images`` (not detached). The original runs its Ds in train mode
    here too, so ``train=True`` updates (and returns) the D's BN running statistics.

    Args:
        d_apply: the D's apply function (see ``DApply``).
        params: the D's ``params``.
        batch_stats: the D's ``batch_stats``.
        fake_images: (B, S, S, 3).
        sent_emb: (B, nef).
        uncond: whether the D has an unconditional head.
        train: BatchNorm mode.

    Returns:
        ``(loss, new_batch_stats, logits)`` with logits ``cond`` (and ``uncond``) (B,).
    """
    code, st = _d_pass(d_apply, params, batch_stats, (fake_images, train), "__call__", train)
    lg = {}
    lg["cond"], st = _d_pass(d_apply, params, st, (code, sent_emb, train), "cond_logits", train)
    loss = bce_with_logits(lg["cond"], 1.0)
    if uncond:
        lg["uncond"], st = _d_pass(d_apply, params, st, (code,), "uncond_logits", train)
        loss = loss + bce_with_logits(lg["uncond"], 1.0)
    return loss, st, lg


def damsm_loss(
    region_features: Array,
    cnn_code: Array,
    words_emb: Array,
    sent_emb: Array,
    cap_lens: Array,
    class_ids: Array | None,
    gamma1: float,
    gamma2: float,
    gamma3: float,
    lam: float,
    hard_words: Array | None = None,
    hard_sent: Array | None = None,
    hard_valid: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """The generator's DAMSM term ``λ(w0 + w1) + λ(s0 + s1)`` (paper Eq. 14, ref. §8.6).

    Args:
        region_features: (B, 17, 17, D) image-encoder regions of the last-stage fake images.
        cnn_code: (B, D) their global code.
        words_emb: (B, T, D) text-encoder word features.
        sent_emb: (B, D) text-encoder sentence vectors.
        cap_lens: (B,) caption lengths.
        class_ids: (B,) class ids for masking, or None.
        gamma1: GAMMA1.
        gamma2: GAMMA2.
        gamma3: GAMMA3.
        lam: SMOOTH.LAMBDA (5 birds, 50 COCO, 1 AttnDCGAN).
        hard_words: optional (B, T, D) word features of one hard negative caption per image (its
            own caption with the position words swapped, say), or (K, B, T, D) of K; not in the
            original. Each image must then also score its caption above those (extra columns of
            ``w0``/``s0``).
        hard_sent: (B, D) or (K, B, D) sentence vectors of the hard captions.
        hard_valid: (B,) or (K, B) bool, where a hard caption exists (with ``hard_words``).

    Returns:
        ``(total, parts)`` with ``parts = {"w_loss": λ(w0+w1), "s_loss": λ(s0+s1)}``.
    """
    f32 = jnp.float32
    w_scores, _ = word_level_scores(region_features, words_emb, cap_lens, gamma1, gamma2, gamma3)
    s_scores = sentence_scores(cnn_code, sent_emb, gamma3)  # (B, B) each
    hard_w = hard_s = None
    if hard_words is not None:
        if hard_sent is None or hard_valid is None:
            raise ValueError("hard_words needs hard_sent (B, D) and hard_valid (B,)")
        hard_w, hard_s = hard_caption_scores(
            region_features, cnn_code, hard_words, hard_sent, cap_lens, hard_valid,
            gamma1, gamma2, gamma3,
        )  # fmt: skip
    w0, w1 = matching_cross_entropy(w_scores.astype(f32), class_ids, hard_w)
    s0, s1 = matching_cross_entropy(s_scores, class_ids, hard_s)
    parts = {"w_loss": lam * (w0 + w1), "s_loss": lam * (s0 + s1)}
    return parts["w_loss"] + parts["s_loss"], parts


def generator_loss(
    discs: dict[str, Any],
    d_params: PyTree,
    d_stats: PyTree,
    image_encoder: Any,
    image_vars: PyTree,
    fakes: tuple[Array, ...],
    mu: Array,
    logvar: Array,
    words: Array,
    sent: Array,
    cap_lens: Array,
    class_ids: Array | None,
    *,
    gamma1: float,
    gamma2: float,
    gamma3: float,
    lam: float,
    hard: dict[str, Array] | None = None,
) -> tuple[Array, tuple[dict[str, Array], PyTree]]:
    """The generator's loss (ref. §8.6 + §8.7; ``generator_loss`` + ``KL_loss`` of the original).

    ``Σ_i [BCE(cond(D_i(fake_i)), 1) + BCE(uncond(D_i(fake_i)), 1)] + λ(w0 + w1) + λ(s0 + s1) + KL``
    with the DAMSM terms from the frozen image encoder (eval mode) on the last stage's images.

    Args:
        discs: ``{"d<i>": Discriminator}`` (``d<i>`` judges stage ``i``); d_params, d_stats: their
            variables, dicts over the same names.
        image_encoder: the DAMSM image encoder module; image_vars: its variables.
        fakes: per stage (B, S_i, S_i, 3) images; mu, logvar: (B, ncf) of the CA net.
        words, sent: (B, T, D), (B, D) text features; cap_lens, class_ids: (B,) (class_ids None:
            no class masking).
        gamma1, gamma2, gamma3, lam: ``SMOOTH.GAMMA1..3`` and ``SMOOTH.LAMBDA``.
        hard: optional ``{"words", "sent", "valid"}`` of hard-negative captions, extra negatives
            of the DAMSM term (see :func:`damsm_loss`).

    Returns:
        ``(total, (parts, new_d_stats))``; parts has ``g_loss<i>``, ``w_loss``, ``s_loss``,
        ``kl_loss``.
    """
    total, aux, st_out = 0.0, {}, {}
    for name, d in discs.items():
        i = int(name[1:])
        loss_i, st, _ = generator_adversarial_loss(
            d.apply, d_params[name], d_stats[name], fakes[i], sent, d.uncond
        )
        st_out[name] = st
        aux[f"g_loss{i}"] = loss_i
        total = total + loss_i
    region, code = image_encoder.apply(image_vars, fakes[-1], train=False)
    f32 = jnp.float32
    damsm, parts = damsm_loss(
        region.astype(f32),
        code.astype(f32),
        words.astype(f32),
        sent.astype(f32),
        cap_lens,
        class_ids,
        gamma1,
        gamma2,
        gamma3,
        lam,
        hard_words=None if hard is None else hard["words"].astype(f32),
        hard_sent=None if hard is None else hard["sent"].astype(f32),
        hard_valid=None if hard is None else hard["valid"],
    )
    kl = kl_loss(mu.astype(f32), logvar.astype(f32))
    aux.update(parts, kl_loss=kl)
    return total + damsm + kl, (aux, st_out)
