"""CLIP's text transformer as AttnGAN's text encoder, with :class:`RNNEncoder`'s interface.

The rest of the project speaks in the dataset's vocabulary ids ``(B, T)`` + ``cap_lens``; CLIP
speaks in BPE ids ``(B, 77)``. :class:`CLIPTextEncoder` bridges the two on device:

1. a piece table ``vocab_pieces`` (V, P), built once from the vocabulary (``ixtoword``) with
   :mod:`attngan_jax.models.clip_tokenizer` (:func:`piece_table`), gives every dataset word its
   BPE ids (-1 = no piece; word 0, the padding ``<end>``, has none);
2. each caption is assembled as ``[<start_of_text>] + pieces(w_0) + ... + pieces(w_{len-1}) +
   [<end_of_text>]``, zero-padded to ``context_length`` (77); a caption with more pieces is cut
   as open_clip cuts (``<end_of_text>`` kept as the last token), and the words cut off read the
   last kept piece;
3. the causal CLIP text transformer runs (``CLIP.text_tokens``);
4. word ``t``'s feature is the transformer's output at word ``t``'s **last** BPE piece (the causal
   model has seen the whole word there), through a trainable linear head ``word_head`` to
   ``emb_dim``: ``words (B, T, emb_dim)`` stays aligned with the dataset's word positions, so the
   attention masks, the DAMSM word loss and the hard negatives (which swap vocabulary ids) work
   unchanged; positions ``t >= len`` are exactly 0, as :class:`RNNEncoder`'s;
5. the sentence feature is CLIP's ``encode_text`` (the ``<end_of_text>`` features through
   ``text_projection``) through a trainable linear head ``sent_head`` to ``emb_dim``.

The piece table is stored as a float32 parameter (ids < 2**24 are exact in float32) so that it
travels with every existing path of the text encoder's parameters (DAMSM state, checkpoints,
model directories, sampling, R-precision) unchanged; it is wrapped in ``stop_gradient`` and
``attngan_jax.train.damsm.trainable_mask`` leaves it out of the optimizer. With
``train_tower=False`` (frozen CLIP) the tower's output is wrapped in ``stop_gradient`` as well, so
its gradients are exactly 0 (they do not enter the text gradient-norm clipping) and only the two
heads learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from attngan_jax.models import clip as clip_lib
from attngan_jax.models.clip_tokenizer import default_tokenizer
from attngan_jax.types import Array

Dtype = Any
TOWER = "clip"  # the name of the CLIP module's parameters inside the text encoder's
TABLE = "vocab_pieces"  # the piece table's parameter name


def piece_table(ixtoword: Sequence[str] | dict[int, str], pieces: int) -> np.ndarray:
    """The BPE ids of every vocabulary word, ``(V, pieces)`` float32, -1 where a word has fewer.

    Args:
        ixtoword: the dataset's words by id (a list, or a dict id -> word); id 0 is padding and
            gets no pieces.
        pieces: the table's width ``P``; a word with more BPE pieces keeps its last ``P`` (the
            feature is read at the last piece, which then still sees the word's end).

    Returns:
        (V, P) float32 (exact for the 49,408 BPE ids).
    """
    if isinstance(ixtoword, dict):
        ixtoword = [ixtoword[i] for i in range(len(ixtoword))]
    tok = default_tokenizer()
    table = np.full((len(ixtoword), pieces), -1, np.float32)
    for i, word in enumerate(ixtoword):
        if i == 0:
            continue
        ids = tok.encode(word)[-pieces:]
        table[i, : len(ids)] = ids
    return table


def assemble(
    captions: Array, cap_lens: Array, table: Array, context_length: int, sot: int, eot: int
) -> tuple[Array, Array, Array]:
    """CLIP token ids of vocabulary-id captions, and where each word ends.

    Args:
        captions: (B, T) vocabulary ids.
        cap_lens: (B,) caption lengths.
        table: (V, P) piece table (:func:`piece_table`), float or int.
        context_length: CLIP's text positions (77).
        sot, eot: the ``<start_of_text>`` / ``<end_of_text>`` ids.

    Returns:
        ``(ids (B, context_length) int32, last (B, T) int32, eot_pos (B,) int32)``: ``last[b, t]``
        is the position of word ``t``'s last piece (clamped into the kept tokens), ``eot_pos`` the
        position of ``<end_of_text>``.
    """
    b, t = captions.shape
    n = context_length
    p = table.shape[1]
    valid = jnp.arange(t)[None, :] < cap_lens[:, None]  # (B, T)
    pieces = table[captions].astype(jnp.int32)  # (B, T, P)
    has = (pieces >= 0) & valid[:, :, None]  # (B, T, P)
    counts = jnp.sum(has, axis=-1)  # (B, T)
    start = 1 + jnp.cumsum(counts, axis=-1) - counts  # (B, T): position of each word's 1st piece
    pos = start[:, :, None] + jnp.arange(p)[None, None, :]  # (B, T, P)
    keep = has & (pos < n - 1)  # the last position is reserved for <end_of_text>
    pos = jnp.where(keep, pos, n)  # out of range: dropped by the scatter
    ids = jnp.zeros((b, n), jnp.int32).at[:, 0].set(sot)
    rows = jnp.broadcast_to(jnp.arange(b)[:, None, None], pos.shape)
    ids = ids.at[rows, pos].set(jnp.where(keep, pieces, 0), mode="drop")  # (B, n)
    eot_pos = jnp.minimum(1 + jnp.sum(counts, axis=-1), n - 1)  # (B,)
    ids = ids.at[jnp.arange(b), eot_pos].set(eot)
    last = jnp.clip(start + counts - 1, 0, n - 2)  # (B, T)
    return ids, last.astype(jnp.int32), eot_pos.astype(jnp.int32)


class CLIPTextEncoder(nn.Module):
    """``(captions (B, T) vocabulary ids, cap_lens (B,)) -> (words (B, T, emb_dim), sent (B, emb_dim))``.

    Attributes:
        clip: the CLIP architecture (only its text side is built).
        vocab_size: words in the dataset's vocabulary, padding id 0 included.
        emb_dim: output size of both heads (the common text-image space).
        word_pieces: width ``P`` of the piece table.
        train_tower: False: CLIP's weights get no gradient (only the heads learn).
        dtype: computation dtype.
    """

    clip: clip_lib.CLIPSpec
    vocab_size: int
    emb_dim: int
    word_pieces: int = 8
    train_tower: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(
        self, captions: Array, cap_lens: Array, train: bool = False
    ) -> tuple[Array, Array]:
        """Encodes captions; ``train`` is accepted for RNNEncoder's interface (no dropout here).

        Returns:
            words (B, T, emb_dim), exactly 0 at ``t >= cap_lens``, and sent (B, emb_dim).
        """
        del train
        table = self.param(
            TABLE, nn.initializers.constant(-1.0), (self.vocab_size, self.word_pieces), jnp.float32
        )
        tok = default_tokenizer()
        ids, last, eot_pos = assemble(
            captions, cap_lens, jax.lax.stop_gradient(table), self.clip.context_length,
            tok.sot_id, tok.eot_id,
        )  # fmt: skip
        model = clip_lib.CLIP(**self.clip.to_json(), dtype=self.dtype, name=TOWER)
        x = model.text_tokens(ids)  # (B, n, W)
        b = x.shape[0]
        eot = x[jnp.arange(b), eot_pos] @ model.text_projection.astype(x.dtype)  # (B, E)
        per_word = jnp.take_along_axis(x, last[:, :, None], axis=1)  # (B, T, W)
        if not self.train_tower:
            per_word, eot = jax.lax.stop_gradient(per_word), jax.lax.stop_gradient(eot)
        words = nn.Dense(self.emb_dim, dtype=self.dtype, name="word_head")(per_word)
        valid = jnp.arange(captions.shape[1])[None, :] < cap_lens[:, None]  # (B, T)
        words = jnp.where(valid[:, :, None], words, 0).astype(jnp.float32)
        sent = nn.Dense(self.emb_dim, dtype=self.dtype, name="sent_head")(eot).astype(jnp.float32)
        return words, sent


def text_params(clip_params: Any) -> dict:
    """The text side of a converted CLIP's ``params`` (what :class:`CLIPTextEncoder`'s tower holds)."""
    keep = ("token_embedding", "positional_embedding", "transformer", "ln_final",
            "text_projection", "logit_scale")  # fmt: skip
    return {k: clip_params[k] for k in keep if k in clip_params}
