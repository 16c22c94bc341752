"""Hard-negative captions (not in the original), used by both DAMSM pretraining and the GAN.

In-batch mismatched pairs almost always differ in the first-named colour, so neither the DAMSM
losses nor the discriminators have to learn positions or the second object without harder
negatives. Each function here makes one kind, on word ids, inside the jitted step:

* :func:`mirror_captions`: swap a caption's position words (left<->right, else top<->bottom...);
* :func:`add_mirrored_negatives`: a DAMSM batch doubled with mirrored images + mirrored captions;
* :func:`recolour_captions`: rename the last-named of two colours.

The word tables come from the vocabulary (:func:`swap_tables`, :func:`colour_word_ids`); a
vocabulary without the words simply gets no change.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attngan_jax.types import Batch

HORIZONTAL_SWAPS = (("left", "right"), ("right", "left"))
VERTICAL_SWAPS = (
    ("top", "bottom"), ("bottom", "top"), ("above", "below"), ("below", "above"),
    ("upper", "lower"), ("lower", "upper"), ("over", "under"), ("under", "over"),
    ("beneath", "above"),
)  # fmt: skip


def swap_tables(ixtoword: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word-id maps that mirror a caption horizontally / vertically (left<->right, top<->bottom)."""
    w2i = {w: i for i, w in enumerate(ixtoword)}
    tables = []
    for pairs in (HORIZONTAL_SWAPS, VERTICAL_SWAPS):
        t = np.arange(len(ixtoword), dtype=np.int32)
        for a, b in pairs:
            if a in w2i and b in w2i:
                t[w2i[a]] = w2i[b]
        tables.append(t)
    return tables[0], tables[1]


def mirror_captions(captions: jax.Array, tables) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Swaps a caption's position words, horizontally if it has any left/right word, else vertically.

    Args:
        captions: (B, L) word ids.
        tables: ``(horizontal, vertical)`` word-id maps from :func:`swap_tables`.

    Returns:
        ``(mirrored (B, L), horizontal (B,) bool, changed (B,) bool)``: ``changed`` is False for
        captions without a position word (their "mirror" is the caption itself).
    """
    lr, tb = (jnp.asarray(t) for t in tables)
    cap_lr, cap_tb = lr[captions], tb[captions]
    has_lr = jnp.any(cap_lr != captions, axis=1)
    has_tb = jnp.any(cap_tb != captions, axis=1)
    horizontal = has_lr | ~has_tb  # (B,)
    mirrored = jnp.where(horizontal[:, None], cap_lr, cap_tb)
    return mirrored, horizontal, jnp.any(mirrored != captions, axis=1)


COLOUR_WORDS = (
    "red", "green", "blue", "yellow", "purple", "orange", "pink", "brown", "black", "white",
    "grey", "gray",
)  # fmt: skip


def colour_word_ids(ixtoword: list[str]) -> np.ndarray:
    """Word ids of the :data:`COLOUR_WORDS` a vocabulary has, (K,) int32."""
    w2i = {w: i for i, w in enumerate(ixtoword)}
    return np.array([w2i[w] for w in COLOUR_WORDS if w in w2i], np.int32)


def recolour_captions(
    captions: jax.Array, colour_ids, rng: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Renames the last-named colour of each caption that names two or more colours.

    Every occurrence of that colour word becomes a colour word the caption does not name (drawn
    uniformly): "a red circle above a purple square" -> "a red circle above a green square". A
    real image with such a caption is a mismatch that only the second object's colour gives away.

    Args:
        captions: (B, L) word ids.
        colour_ids: (K,) word ids of the colour words (:func:`colour_word_ids`).
        rng: key of the replacement draw.

    Returns:
        ``(recoloured (B, L), changed (B,) bool)``; captions naming fewer than two colours (or
        every colour) are returned unchanged with ``changed`` False.
    """
    ids = jnp.asarray(colour_ids)  # (K,)
    is_colour = captions[:, :, None] == ids  # (B, L, K)
    named = jnp.any(is_colour, axis=1)  # (B, K)
    position = jnp.arange(captions.shape[1])
    last_at = jnp.max(jnp.where(jnp.any(is_colour, axis=2), position, -1), axis=1)  # (B,)
    last = jnp.take_along_axis(captions, jnp.maximum(last_at, 0)[:, None], axis=1)  # (B, 1)
    draw = jnp.where(named, -1.0, jax.random.uniform(rng, named.shape))  # named ones never win
    new = ids[jnp.argmax(draw, axis=1)][:, None]  # (B, 1)
    n_named = jnp.sum(named, axis=1)
    changed = (n_named >= 2) & (n_named < ids.shape[0])
    return jnp.where(changed[:, None] & (captions == last), new, captions), changed


def add_mirrored_negatives(batch: Batch, image_key: str, tables) -> Batch:
    """Doubles a batch with mirrored images and mirrored captions as hard negatives.

    Not in the original. In-batch negatives almost never differ only by a position word, so the
    contrastive DAMSM losses barely learn "left" vs "right"; a caption naming positions is paired
    here with the image flipped along that axis and the caption's position words swapped
    (``left<->right``; ``top<->bottom``, ``above<->below`` for vertical flips). A mirrored pair whose
    caption did not change (no position word) gets the class id of its original, so the class
    masking does not count a true match as a negative.

    Args:
        batch: ``image_key`` (B, S, S, 3), ``captions`` (B, L), ``cap_lens`` (B,).
        image_key: the image field.
        tables: ``(horizontal, vertical)`` word-id maps from :func:`swap_tables`.

    Returns:
        A batch of 2B with ``class_ids`` set for the masking.
    """
    caps, img = batch["captions"], batch[image_key]
    bsz = caps.shape[0]
    new_caps, horizontal, changed = mirror_captions(caps, tables)
    flipped = jnp.where(horizontal[:, None, None, None], img[:, :, ::-1], img[:, ::-1])
    idx = jnp.arange(bsz, dtype=jnp.int32)
    return {
        image_key: jnp.concatenate([img, flipped]),
        "captions": jnp.concatenate([caps, new_caps]),
        "cap_lens": jnp.concatenate([batch["cap_lens"], batch["cap_lens"]]),
        "class_ids": jnp.concatenate([idx, jnp.where(changed, bsz + idx, idx)]),
    }
