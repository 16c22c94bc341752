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


SHAPE_CLASSES = (
    ("circle", "disc", "disk", "round", "dot", "ball"),
    ("square", "box", "block", "rectangle"),
    ("triangle", "triangular"),
)  # the first word of each class is its replacement word


def shape_word_table(ixtoword: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Which shape each word names, and the word that names each shape.

    Returns:
        ``(word_class (V,) int32, canonical (C,) int32)``: ``word_class[w]`` is the index in
        :data:`SHAPE_CLASSES` of word ``w`` (-1 for other words); ``canonical[c]`` is the id of
        class ``c``'s first word (-1 when the vocabulary lacks it).
    """
    w2i = {w: i for i, w in enumerate(ixtoword)}
    word_class = np.full(len(ixtoword), -1, np.int32)
    canonical = np.full(len(SHAPE_CLASSES), -1, np.int32)
    for c, words in enumerate(SHAPE_CLASSES):
        for w in words:
            if w in w2i:
                word_class[w2i[w]] = c
        canonical[c] = w2i.get(words[0], -1)
    return word_class, canonical


def reshape_captions(captions: jax.Array, tables, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Renames the shape of one object of each caption: "a red circle" -> "a red triangle".

    One shape word per caption (drawn uniformly among its shape words) becomes the replacement
    word of another shape (drawn uniformly among the shapes the vocabulary names). A real image
    with such a caption is a mismatch that only the object's shape gives away: in-batch
    mismatches and the mirrored or recoloured captions almost never are.

    Args:
        captions: (B, L) word ids.
        tables: ``(word_class, canonical)`` from :func:`shape_word_table`.
        rng: key of the draws.

    Returns:
        ``(reshaped (B, L), changed (B,) bool)``; captions without a shape word are returned
        unchanged with ``changed`` False.
    """
    word_class, canonical = (jnp.asarray(t) for t in tables)
    k_pos, k_new = jax.random.split(rng)
    cls = word_class[captions]  # (B, L), -1 off shape words
    is_shape = cls >= 0
    draw = jnp.where(is_shape, jax.random.uniform(k_pos, captions.shape), -1.0)
    at = jnp.argmax(draw, axis=1)  # (B,) a random shape word's position
    old = jnp.take_along_axis(cls, at[:, None], axis=1)  # (B, 1)
    options = (canonical[None, :] >= 0) & (jnp.arange(canonical.shape[0])[None, :] != old)
    pick = jnp.where(options, jax.random.uniform(k_new, options.shape), -1.0)  # (B, C)
    new = canonical[jnp.argmax(pick, axis=1)]  # (B,)
    changed = jnp.any(is_shape, axis=1) & jnp.any(options, axis=1)
    hit = changed[:, None] & (jnp.arange(captions.shape[1])[None, :] == at[:, None])
    return jnp.where(hit, new[:, None], captions), changed


def duplicate_objects(images: jax.Array) -> jax.Array:
    """Real images with their objects drawn twice: one object per colour is all the data shows.

    Each image is composited with a copy of itself rolled by half its side along the axis on
    which its saturated pixels lie farthest from the middle (a copy of an object on the left
    lands on the right, one at the top lands at the bottom); the copy's pixels replace the
    image's where they are more saturated. The result shows every object twice in its colour,
    which the generator does when it hedges and the dataset never does: a negative for the
    discriminators (``gan.duplicate_negatives``).

    Args:
        images: (B, S, S, 3) in [-1, 1] (a flat, light background and saturated objects).

    Returns:
        (B, S, S, 3) the composited images.
    """
    s = images.shape[1]

    def chroma_of(x):  # (B, S, S): chroma in the opponent colour plane (oracle.py), 0..~255
        rgb = (x + 1.0) * 127.5
        a = rgb[..., 0] - (rgb[..., 1] + rgb[..., 2]) / 2
        b = jnp.sqrt(3.0) / 2 * (rgb[..., 1] - rgb[..., 2])
        return jnp.sqrt(a * a + b * b + 1e-6)

    chroma = chroma_of(images)
    weight = jax.nn.relu(chroma - 50.0)  # the objects' pixels
    total = jnp.sum(weight, axis=(1, 2)) + 1e-6
    t = (jnp.arange(s) + 0.5) / s - 0.5
    off_x = jnp.abs(jnp.sum(weight * t[None, None, :], axis=(1, 2)) / total)  # (B,)
    off_y = jnp.abs(jnp.sum(weight * t[None, :, None], axis=(1, 2)) / total)
    along_x = off_x >= off_y
    copy = jnp.where(
        along_x[:, None, None, None],
        jnp.roll(images, s // 2, axis=2),
        jnp.roll(images, s // 2, axis=1),
    )
    alpha = jnp.clip((chroma_of(copy) - chroma) / 60.0, 0.0, 1.0)[..., None]
    return images * (1.0 - alpha) + copy * alpha
