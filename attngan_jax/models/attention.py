"""Generator word attention (reference §5.1, ``GlobalAttention.py``).

Layouts: image features NHWC ``(B, H, W, C)``, word features ``(B, T, D)``, attention maps
``(B, T, H, W)``, padding masks ``(B, T)`` bool with True at padding. The DAMSM word-region
attention (the original's ``func_attention``, §5.2) is
:func:`attngan_jax.losses.pairwise_word_region_attention`, computed for every (image, caption) pair
of the word loss at once.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from attngan_jax.models.layers import conv1x1

Dtype = Any
Array = jax.Array


def faithful_masked_scores(scores: Array, mask: Array) -> Array:
    """Applies the original's misaligned word mask to generator attention scores.

    ``GlobalAttentionGeneral`` lays the scores out as ``(B*queryL, T)`` rows ``r = b*queryL + q``
    but masks them with ``mask.repeat(queryL, 1)``, whose row ``r`` is ``mask[r % B]``: query ``q``
    of sample ``b`` sees the padding of sample ``(b*queryL + q) % B`` (reference §5.1 step 4, §16.1;
    upstream issue #93). Reading the same contiguous rows as ``(queryL, B, T)`` puts ``r % B`` on
    the middle axis, so the mask is a plain broadcast of ``mask`` there: no gather, no index array.

    Args:
        scores: (B, Q, T) scores.
        mask: (B, T) bool, True at padding.

    Returns:
        (B, Q, T) scores with masked entries set to ``-inf``.
    """
    b, q, t = scores.shape
    rows = scores.reshape(q, b, t)  # flat row r = b*Q + q read as (r // B, r % B)
    rows = jnp.where(mask[None, :, :], -jnp.inf, rows)  # row r masked with mask[r % B]
    return rows.reshape(b, q, t)


class GlobalAttentionGeneral(nn.Module):
    """The generator's word-context attention (paper Eq. 2; reference §5.1).

    Attributes:
        idf: image feature channels (``ngf``).
        cdf: word feature size (``nef`` = 256).
        faithful_mask: reproduce the original's misaligned mask (default, needed for parity with
            the released weights); False masks each sample with its own padding.
        dtype: computation dtype (the softmax runs in float32).
    """

    idf: int
    cdf: int
    faithful_mask: bool = True
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, h: Array, words: Array, mask: Array | None) -> tuple[Array, Array]:
        """Attends from every pixel to every word.

        Args:
            h: (B, H, W, idf) image features (the queries).
            words: (B, T, cdf) word features; padded positions should be 0 (as the encoder gives).
            mask: (B, T) bool, True at padding, or None (no masking).

        Returns:
            context (B, H, W, idf) (word-context vector per pixel) and attn (B, T, H, W).
        """
        b, ih, iw, idf = h.shape
        t = words.shape[1]
        q = ih * iw
        dtype = self.dtype or h.dtype
        # U·e: conv1x1 over the words as a (B, T, 1, cdf) image -> (B, T, idf).
        source = conv1x1(self.idf, dtype=self.dtype, name="conv_context")(words[:, :, None, :])
        source = source[:, :, 0, :]  # (B, T, idf)
        target = h.reshape(b, q, idf).astype(dtype)  # (B, Q, idf)
        scores = jnp.einsum("bqd,btd->bqt", target, source.astype(dtype)).astype(jnp.float32)
        if mask is not None:
            if self.faithful_mask:
                scores = faithful_masked_scores(scores, mask)
            else:
                scores = jnp.where(mask[:, None, :], -jnp.inf, scores)
        attn = jax.nn.softmax(scores, axis=-1)  # over words, Eq. (2); (B, Q, T)
        context = jnp.einsum(
            "bqt,btd->bqd", attn.astype(dtype), source.astype(dtype)
        )  # (B, Q, idf)
        context = context.reshape(b, ih, iw, idf)
        attn = attn.transpose(0, 2, 1).reshape(b, t, ih, iw)  # (B, T, H, W)
        return context, attn
