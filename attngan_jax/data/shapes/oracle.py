"""Caption-fidelity oracle for the captioned-shapes dataset: does an image show its caption?

Pixels are segmented by colour: a pixel belongs to palette colour c when it is saturated (chroma
above ``min_chroma``; the background is a light grey) and its hue is nearest to c's hue (within
``max_hue_distance`` degrees). Hue and chroma are taken in the opponent plane
``a = R - (G + B) / 2``, ``b = sqrt(3) / 2 (G - B)``: blending a colour with grey (anti-aliased
edges, washed-out generator output) scales ``(a, b)`` but keeps its angle, so the hue stays put.

Per caption (parsed by :func:`attngan_jax.data.shapes.parse.parse_caption`) three criteria are
judged:

* ``colour_single`` (single-object captions naming a colour): that colour covers the most pixels.
* ``position`` (captions stating a position or a relation): every stated fact holds for the
  colour centroids - left/right/top/bottom: the centroid lies beyond the middle by ``margin``;
  center: within ``center_radius`` of the middle on both axes; relations: A's centroid is left
  of/right of/above/below B's by more than ``margin``.
* ``both_colours`` (captions naming two or more different colours): each covers at least
  ``min_fraction`` of the image and the named colours are the most covering ones (so noise with
  every hue does not pass).

A colour that covers less than ``min_fraction`` of the image counts as absent. Chance levels (random
captions of the dataset) are about 1/6, 1/10 and 1/30.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attngan_jax.data.shapes.parse import CaptionSpec, parse_caption
from attngan_jax.data.shapes.scene import COLOURS, PALETTE

CRITERIA = ("colour_single", "position", "both_colours")


def _opponent(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360) and chroma (0..~255) of float RGB (..., 3) in 0..255."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    oa = r - (g + b) / 2
    ob = np.sqrt(3.0) / 2 * (g - b)
    return np.degrees(np.arctan2(ob, oa)) % 360.0, np.hypot(oa, ob)


_PALETTE_HUES = _opponent(np.array([PALETTE[c] for c in COLOURS], np.float64))[0]  # (6,)


def to_rgb255(image: np.ndarray) -> np.ndarray:
    """Float (H, W, 3) RGB in 0..255 from uint8 or float in [-1, 1] (the generator's range)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an HWC RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64)
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image must be uint8 or float in [-1, 1], got dtype {image.dtype}")
    return np.clip((image.astype(np.float64) + 1.0) * 127.5, 0.0, 255.0)


def segment(
    image: np.ndarray, min_chroma: float = 50.0, max_hue_distance: float = 30.0
) -> np.ndarray:
    """Labels each pixel with its palette colour.

    Args:
        image: (H, W, 3) uint8, or float in [-1, 1].
        min_chroma: pixels with smaller chroma are background.
        max_hue_distance: pixels farther (degrees) from every palette hue are background.

    Returns:
        int (H, W): index into :data:`~attngan_jax.data.shapes.scene.COLOURS`, -1 for background.
    """
    hue, chroma = _opponent(to_rgb255(image))  # (H, W) each
    dist = np.abs(hue[..., None] - _PALETTE_HUES)  # (H, W, 6)
    dist = np.minimum(dist, 360.0 - dist)
    labels = np.argmin(dist, axis=-1)
    keep = (chroma >= min_chroma) & (np.min(dist, axis=-1) <= max_hue_distance)
    return np.where(keep, labels, -1)


def colour_stats(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-colour coverage and centroids of a label map.

    Args:
        labels: int (H, W) from :func:`segment`.

    Returns:
        ``(fractions, centroids, foreground)``: fractions (6,) of the image per colour;
        centroids (6, 2) ``(x, y)`` as fractions of the image side (NaN where absent);
        foreground (2,) centroid of all coloured pixels (NaN if none).
    """
    h, w = labels.shape
    k = len(COLOURS)
    xs = np.broadcast_to((np.arange(w) + 0.5) / w, (h, w)).ravel()  # pixel centres, (H*W,)
    ys = np.broadcast_to(((np.arange(h) + 0.5) / h)[:, None], (h, w)).ravel()
    bins = labels.ravel() + 1  # 0 = background, 1 + colour index
    counts = np.bincount(bins, minlength=k + 1)[1:]  # (6,)
    sum_x = np.bincount(bins, weights=xs, minlength=k + 1)[1:]
    sum_y = np.bincount(bins, weights=ys, minlength=k + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        centroids = np.stack([sum_x / counts, sum_y / counts], axis=-1)  # (6, 2), NaN if absent
        foreground = np.array([sum_x.sum(), sum_y.sum()]) / counts.sum()
    fractions = counts / (h * w)
    return fractions, centroids, foreground


def _in_region(xy: np.ndarray, position: str, margin: float, center_radius: float) -> bool:
    x, y = xy
    return {
        "left": x < 0.5 - margin,
        "right": x > 0.5 + margin,
        "top": y < 0.5 - margin,
        "bottom": y > 0.5 + margin,
        "center": abs(x - 0.5) <= center_radius and abs(y - 0.5) <= center_radius,
    }[position]


def _related(a: np.ndarray, b: np.ndarray, relation: str, margin: float) -> bool:
    return {
        "left": b[0] - a[0] > margin,
        "right": a[0] - b[0] > margin,
        "above": b[1] - a[1] > margin,
        "below": a[1] - b[1] > margin,
    }[relation]


def check(
    image: np.ndarray,
    caption: str | CaptionSpec,
    min_fraction: float = 0.01,
    margin: float = 0.08,
    center_radius: float = 0.15,
    min_chroma: float = 50.0,
    max_hue_distance: float = 30.0,
) -> dict[str, bool]:
    """Judges one image against one caption.

    Args:
        image: (H, W, 3) uint8, or float in [-1, 1]; any size.
        caption: caption text or its parsed :class:`~attngan_jax.data.shapes.parse.CaptionSpec`.
        min_fraction: a colour covering less of the image is absent.
        margin: how far beyond the middle a left/right/top/bottom centroid must lie, and the minimum
            centroid separation of a relation (fractions of the image side).
        center_radius: half side of the middle square for 'center'.
        min_chroma: see :func:`segment`.
        max_hue_distance: see :func:`segment`.

    Returns:
        The verdict of each criterion of :data:`CRITERIA` that applies to the caption (others are
        left out).
    """
    spec = parse_caption(caption) if isinstance(caption, str) else caption
    fractions, centroids, foreground = colour_stats(segment(image, min_chroma, max_hue_distance))
    present = fractions >= min_fraction  # (6,)

    def centroid(colour: str | None) -> np.ndarray | None:
        if colour is None:  # a caption naming no colour: any coloured pixel
            return foreground if fractions.sum() >= min_fraction else None
        k = COLOURS.index(colour)
        return centroids[k] if present[k] else None

    out: dict[str, bool] = {}
    if len(spec.objects) == 1 and spec.objects[0].colour is not None:
        k = COLOURS.index(spec.objects[0].colour)
        out["colour_single"] = bool(present[k] and np.argmax(fractions) == k)
    facts: list[bool] = []
    for obj in spec.objects:
        if obj.position is not None and (obj.colour is not None or len(spec.objects) == 1):
            xy = centroid(obj.colour)
            facts.append(xy is not None and _in_region(xy, obj.position, margin, center_radius))
    if spec.relation is not None:
        ca, cb = spec.objects[0].colour, spec.objects[1].colour
        if ca is not None and cb is not None and ca != cb:
            a, b = centroid(ca), centroid(cb)
            facts.append(a is not None and b is not None and _related(a, b, spec.relation, margin))
    if facts:
        out["position"] = all(facts)
    named = set(spec.colours())
    if len(named) >= 2:
        # The named colours must be present AND be the most covering ones: an image splashed with
        # every hue (e.g. an untrained generator's noise) must not pass.
        top = {int(k) for k in np.argsort(-fractions, kind="stable")[: len(named)]}
        out["both_colours"] = all(
            present[COLOURS.index(c)] and COLOURS.index(c) in top for c in named
        )
    return out


def score(
    images: np.ndarray | Sequence[np.ndarray],
    captions: Sequence[str | CaptionSpec],
    **thresholds: float,
) -> dict[str, float]:
    """Caption fidelity of a set of images.

    Args:
        images: (N, H, W, 3) array or N arrays (H, W, 3); uint8, or float in [-1, 1].
        captions: N caption texts or :class:`~attngan_jax.data.shapes.parse.CaptionSpec`.
        **thresholds: keyword arguments of :func:`check`.

    Returns:
        ``{criterion: accuracy}`` for each of :data:`CRITERIA` (NaN when no caption applies) and
        ``{'n_' + criterion: count}`` of the captions judged by it, plus ``'n'`` (all captions).
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    hits = {c: 0 for c in CRITERIA}
    counts = {c: 0 for c in CRITERIA}
    for image, caption in zip(images, captions):
        for criterion, ok in check(image, caption, **thresholds).items():
            counts[criterion] += 1
            hits[criterion] += int(ok)
    result: dict[str, float] = {"n": len(captions)}
    for c in CRITERIA:
        result[c] = hits[c] / counts[c] if counts[c] else float("nan")
        result["n_" + c] = counts[c]
    return result
