"""DAMSM text encoder ``RNN_ENCODER``: embedding, dropout and a bidirectional LSTM (reference §3).

The original packs the padded batch (``pack_padded_sequence``) so that each caption is processed
only up to its own length. We reproduce those semantics without packing and with a static ``T``:

* the forward direction runs ``t = 0 .. len-1`` from a zero state;
* the backward direction starts from a zero state at ``t = len-1`` (not at ``T-1``) and runs down to
  ``t = 0``: each sequence is reversed *inside its own length*, scanned forward, and reversed back;
* a ``t < len`` mask freezes the carry and zeroes the output, so positions ``t >= len`` are
  exactly 0 (as ``pad_packed_sequence`` returns them) and the final carries are the packed final
  states.

``T`` stays the caption array's length ``L`` (``WORDS_NUM``); the original's ``T = max(cap_lens)``
output is the first ``max(cap_lens)`` columns of ours (see DEVELOPERS.md).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Array = jax.Array


def uniform_init(bound: float):
    """Initialiser drawing from ``U(-bound, bound)`` (torch's ``uniform_(-b, b)``)."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class BiLSTM(nn.Module):
    """One-layer bidirectional LSTM over padded sequences with packed-sequence semantics.

    Parameters are stacked over the direction axis (0 = forward, 1 = backward) and stored in the
    Dense layout ``(in, 4H)``; the gate columns are ordered ``i, f, g, o`` as torch's rows.
    Both torch biases are kept (``b_ih`` and ``b_hh``) so the parameter count and the optimiser
    dynamics equal the original's; the cell adds them.

    Attributes:
        hidden: hidden units per direction (128 in AttnGAN).
        dtype: computation dtype of the matmuls (the recurrence state stays float32).
    """

    hidden: int
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: Array, lens: Array) -> tuple[Array, Array]:
        """Runs both directions.

        Args:
            x: (B, L, E) inputs.
            lens: (B,) int lengths, ``1 <= lens <= L``.

        Returns:
            outputs (B, L, 2H) = [forward | backward], exactly 0 at ``t >= len``, and the final
            hidden states (B, 2H) = [forward h at t=len-1 | backward h at t=0].
        """
        b, length, e = x.shape
        h_dim = self.hidden
        init = uniform_init(1.0 / math.sqrt(h_dim))  # torch LSTM default
        w_ih = self.param("w_ih", init, (2, e, 4 * h_dim), jnp.float32)
        w_hh = self.param("w_hh", init, (2, h_dim, 4 * h_dim), jnp.float32)
        b_ih = self.param("b_ih", init, (2, 4 * h_dim), jnp.float32)
        b_hh = self.param("b_hh", init, (2, 4 * h_dim), jnp.float32)
        dtype = self.dtype or jnp.float32

        t = jnp.arange(length)
        lens = lens.astype(jnp.int32)
        valid = t[None, :] < lens[:, None]  # (B, L)
        # Reversal inside each sequence's own length (an involution): t -> len-1-t for t < len.
        rev = jnp.where(valid, lens[:, None] - 1 - t[None, :], t[None, :])  # (B, L)

        # Input projections of both directions in one matmul.
        w_cat = jnp.transpose(w_ih, (1, 0, 2)).reshape(e, 8 * h_dim)  # (E, [fwd 4H | bwd 4H])
        gx = jnp.dot(x.astype(dtype), w_cat.astype(dtype)).astype(jnp.float32)  # (B, L, 8H)
        gx = gx.reshape(b, length, 2, 4 * h_dim) + (b_ih + b_hh)  # (B, L, 2, 4H)
        gx_fwd = gx[:, :, 0]  # (B, L, 4H)
        gx_bwd = jnp.take_along_axis(gx[:, :, 1], rev[..., None], axis=1)  # (B, L, 4H) reversed
        xs = jnp.stack([gx_fwd, gx_bwd], axis=0).transpose(2, 0, 1, 3)  # (L, 2, B, 4H)
        ms = valid.T  # (L, B)
        w_hh_c = w_hh.astype(dtype)

        def step(carry, inp):
            h, c = carry  # (2, B, H) each
            gx_t, m = inp  # (2, B, 4H), (B,)
            gates = gx_t + jnp.einsum("dbh,dhg->dbg", h.astype(dtype), w_hh_c).astype(jnp.float32)
            i, f, g, o = jnp.split(gates, 4, axis=-1)  # torch gate order
            c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
            m = m[None, :, None]  # (1, B, 1)
            out = jnp.where(m, h_new, 0.0)
            return (jnp.where(m, h_new, h), jnp.where(m, c_new, c)), out

        zeros = jnp.zeros((2, b, h_dim), jnp.float32)
        (h_last, _), ys = jax.lax.scan(step, (zeros, zeros), (xs, ms))  # ys: (L, 2, B, H)
        ys = ys.transpose(1, 2, 0, 3)  # (2, B, L, H)
        out_fwd = ys[0]
        out_bwd = jnp.take_along_axis(ys[1], rev[..., None], axis=1)  # reverse back
        outputs = jnp.concatenate([out_fwd, out_bwd], axis=-1)  # (B, L, 2H)
        final = jnp.concatenate([h_last[0], h_last[1]], axis=-1)  # (B, 2H)
        return outputs, final


class RNNEncoder(nn.Module):
    """The DAMSM text encoder (``RNN_ENCODER``): words and sentence features of a caption batch.

    Attributes:
        vocab_size: number of words (``n_words``: 5,450 birds, 27,297 COCO).
        embed_dim: word embedding size (``ninput`` = 300).
        hidden_dim: output feature size (``nhidden`` = ``TEXT.EMBEDDING_DIM`` = 256); each LSTM
            direction has ``hidden_dim // 2`` units.
        dropout_rate: dropout on the embeddings in train mode (uses the ``"dropout"`` rng).
        dtype: computation dtype.
    """

    vocab_size: int
    embed_dim: int = 300
    hidden_dim: int = 256
    dropout_rate: float = 0.5
    dtype: Dtype | None = None

    @nn.compact
    def __call__(
        self, captions: Array, cap_lens: Array, train: bool = False
    ) -> tuple[Array, Array]:
        """Encodes a padded caption batch.

        Args:
            captions: (B, L) int token ids, padded with 0 after each caption's length.
            cap_lens: (B,) int lengths (``1 <= len <= L``; any order, no sorting needed).
            train: apply embedding dropout (needs the ``"dropout"`` rng).

        Returns:
            words_emb (B, L, hidden_dim), exactly 0 at ``t >= len``, and sent_emb (B, hidden_dim).
        """
        emb = nn.Embed(
            self.vocab_size,
            self.embed_dim,
            embedding_init=uniform_init(0.1),
            param_dtype=jnp.float32,
            name="encoder",
        )(captions)  # (B, L, E)
        emb = nn.Dropout(self.dropout_rate)(emb, deterministic=not train)
        words_emb, sent_emb = BiLSTM(self.hidden_dim // 2, dtype=self.dtype, name="rnn")(
            emb, cap_lens
        )
        dtype = self.dtype or jnp.float32
        return words_emb.astype(dtype), sent_emb.astype(dtype)


RNNEncoderBirds = functools.partial(RNNEncoder, vocab_size=5450)
RNNEncoderCOCO = functools.partial(RNNEncoder, vocab_size=27297)
