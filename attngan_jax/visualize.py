"""Training visualisation: the AttnGAN "super image" of stages and word attention, PNG output.

The original (`code/miscc/utils.py:build_super_images`, reference §11) draws, per sample, the
low-resolution image, the max-over-words map and one map per word, with the maps alpha-
composited (alpha 210/255) over the image under a caption strip. This port keeps the idea in a
more compact layout (per sample one row): every stage's image, then for each attending stage the
`top_k` words with the most attention mass, each a tile of its map blended over that stage's
image, the word written above. Pure visualisation: not part of parity.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from attngan_jax.runtime import atomic

HEADER = 14  # px of caption strip above each row of tiles (PIL's default font is ~10 px tall)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Maps images in [-1, 1] to uint8 [0, 255] with rounding and clipping.

    The original computes `((x + 1) * 127.5).astype(np.uint8)`: it truncates (0.0 -> 127) and
    does not clamp, so values outside [-1, 1] wrap around. Here values are rounded (half to even:
    0.0 -> 128), clipped to [0, 255], and NaN becomes 0.

    Args:
      x: float array of any shape, nominally in [-1, 1] (jax or numpy).

    Returns:
      uint8 array of the same shape.
    """
    y = np.round((np.asarray(x, np.float32) + 1.0) * 127.5)
    return np.clip(np.nan_to_num(y, nan=0.0), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, ncols: int, pad: int = 2, pad_value: int = 0) -> np.ndarray:
    """Tiles images row-major into a grid.

    Args:
      images: (N, H, W, C) array (any dtype).
      ncols: number of columns; rows = ceil(N / ncols), missing cells are `pad_value`.
      pad: pixels between and around the cells.
      pad_value: fill value.

    Returns:
      (rows * (H + pad) + pad, ncols * (W + pad) + pad, C) array of `images.dtype`.
    """
    images = np.asarray(images)
    n, h, w, c = images.shape
    rows = max(1, -(-n // ncols))
    out = np.full((rows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, images.dtype)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y : y + h, x : x + w] = images[i]
    return out


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes a PNG atomically (``runtime.atomic``: a temporary file beside it, fsync, rename).

    Args:
      path: destination; parent directories are created.
      image: uint8 (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"save_png expects uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    with atomic.replacing(path, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")


def top_attended_words(attn: np.ndarray, num_words: int, k: int) -> list[int]:
    """Indices of the `k` real words with the most total attention mass, largest first.

    Args:
      attn: (T, h, w) attention of one sample (softmax over regions or words; any nonneg map).
      num_words: number of real words; positions >= num_words (padding) are never chosen.
      k: how many.

    Returns:
      Up to `min(k, num_words)` word indices.
    """
    mass = np.asarray(attn, np.float64)[:num_words].reshape(num_words, -1).sum(-1)  # (num_words,)
    return [int(t) for t in np.argsort(-mass, kind="stable")[:k]]


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a uint8 (h, w, 3) image or a float32 (h, w) map to size (H, W)."""
    if img.shape[:2] == size:
        return img
    return np.asarray(Image.fromarray(img).resize(size[::-1], Image.Resampling.BILINEAR))


def _hot(v: np.ndarray) -> np.ndarray:
    """'hot' colormap: (H, W) in [0, 1] -> (H, W, 3) in [0, 1] (black-red-yellow-white)."""
    return np.clip(np.stack([3 * v, 3 * v - 1, 3 * v - 2], axis=-1), 0.0, 1.0)


def _label(draw: ImageDraw.ImageDraw, font, x: int, y: int, width: int, text: str) -> None:
    """Writes `text` at (x, y), truncated to `width` pixels."""
    while text and draw.textlength(text, font=font) > width:
        text = text[:-1]
    draw.text((x + 1, y), text, fill=(255, 255, 255), font=font)


def attention_tiles(
    image: np.ndarray, attn: np.ndarray, num_words: int, top_k: int, alpha: float = 0.6
) -> list[tuple[int, np.ndarray]]:
    """The top-k attended words of one sample at one stage, each its map blended over the image.

    A word's map is bilinear-upsampled to the image, min-max normalised jointly over the sample's
    real words at that stage, coloured with the 'hot' colormap and blended with weight ``alpha``
    over the image (the tiles of :func:`super_image` and of the local page).

    Args:
      image: uint8 (H, W, 3) image of the stage the maps belong to.
      attn: (T, h, w) attention maps of the sample at that stage.
      num_words: the sample's real words (positions beyond are padding).
      top_k: tiles wanted.
      alpha: weight of the attention colours.

    Returns:
      Up to ``top_k`` ``(word index, uint8 (H, W, 3) tile)``, most attended first.
    """
    size = image.shape[:2]
    real = np.asarray(attn, np.float32)[:num_words]  # (num_words, h, w)
    lo, hi = (float(real.min()), float(real.max())) if num_words else (0.0, 1.0)
    base = image.astype(np.float32) / 255.0  # (H, W, 3)
    out = []
    for t in top_attended_words(attn, num_words, top_k):
        heat = _resize((real[t] - lo) / max(hi - lo, 1e-12), size)  # (H, W)
        blend = (1.0 - alpha) * base + alpha * _hot(np.clip(heat, 0.0, 1.0))
        out.append((t, to_uint8(blend * 2.0 - 1.0)))
    return out


def super_image(
    stage_images: Sequence[np.ndarray],
    attention_maps: Sequence[np.ndarray],
    words: Sequence[Sequence[str]],
    top_k: int = 5,
    max_samples: int = 8,
    tile_size: int | tuple[int, int] | None = None,
    alpha: float = 0.6,
    pad: int = 2,
) -> np.ndarray:
    """Renders stages and top-k word attention maps, one row per sample.

    Row layout: `[stage 0, ..., stage S-1 | top_k tiles of stage 1 | ... | top_k of stage S-1]`.
    An attention tile is the word's map (bilinear-upsampled, min-max normalised jointly over the
    sample's real words at that stage, 'hot' colormap) blended with weight `alpha` over that
    stage's image; "t:word" is written above it. Samples with fewer words get blank tiles.

    Args:
      stage_images: S arrays (B, H_i, W_i, 3) in [-1, 1], one per stage, low to high resolution.
      attention_maps: A <= S - 1 arrays (B, T, h_j, w_j); map j belongs to stage j + 1 (the
        first stage has no attention).
      words: per sample its real words (len <= T); `words[b][t]` labels map t.
      top_k: word tiles per attending stage.
      max_samples: rows drawn (the first `min(B, max_samples)` samples).
      tile_size: tile size (int or (H, W)); default the largest stage's size.
      alpha: weight of the attention colours over the image.
      pad: pixels between tiles.

    Returns:
      uint8 (rows * (HEADER + H + pad) + pad, cols * (W + pad) + pad, 3) image.
    """
    stage_images = [np.asarray(x) for x in stage_images]
    attention_maps = [np.asarray(a, np.float32) for a in attention_maps]
    if len(attention_maps) > len(stage_images) - 1:
        raise ValueError(f"{len(attention_maps)} attention maps for {len(stage_images)} stages")
    n = min(stage_images[0].shape[0], max_samples)
    if len(words) < n:
        raise ValueError(f"words has {len(words)} entries for {n} samples")
    if tile_size is None:
        size = max((x.shape[1:3] for x in stage_images), key=lambda s: s[0] * s[1])
    else:
        size = (tile_size, tile_size) if isinstance(tile_size, int) else tuple(tile_size)
    th, tw = int(size[0]), int(size[1])
    ncols = len(stage_images) + top_k * len(attention_maps)
    row_h = HEADER + th + pad
    canvas = np.zeros((n * row_h + pad, ncols * (tw + pad) + pad, 3), np.uint8)
    labels = []  # (x, y, text), drawn after all pixels are placed

    for b in range(n):
        y0 = pad + b * row_h
        tiles = [_resize(to_uint8(x[b]), (th, tw)) for x in stage_images]  # S x (th, tw, 3)
        cells = [(tile, f"{x.shape[1]}x{x.shape[2]}") for tile, x in zip(tiles, stage_images)]
        num_words = len(words[b])
        for j, attn in enumerate(attention_maps):
            if num_words > attn.shape[1]:
                raise ValueError(f"sample {b}: {num_words} words but T = {attn.shape[1]}")
            chosen = attention_tiles(tiles[j + 1], attn[b], num_words, top_k, alpha)
            cells.extend((tile, f"{t}:{words[b][t]}") for t, tile in chosen)
            cells.extend([(None, "")] * (top_k - len(chosen)))
        for c, (tile, text) in enumerate(cells):
            x0 = pad + c * (tw + pad)
            if tile is not None:
                canvas[y0 + HEADER : y0 + HEADER + th, x0 : x0 + tw] = tile
            if text:
                labels.append((x0, y0, text))

    img = Image.fromarray(canvas)
    draw, font = ImageDraw.Draw(img), ImageFont.load_default()
    for x0, y0, text in labels:
        _label(draw, font, x0, y0 + 1, tw, text)
    return np.asarray(img)
