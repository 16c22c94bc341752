"""Caption-fidelity oracle for the captioned-shapes dataset: does an image show its caption?

Pixels are segmented by colour: a pixel belongs to palette colour c when it is saturated (chroma
above ``min_chroma``; the background is a light grey) and its hue is nearest to c's hue (within
``max_hue_distance`` degrees). Hue and chroma are taken in the opponent plane
``a = R - (G + B) / 2``, ``b = sqrt(3) / 2 (G - B)``: blending a colour with grey (anti-aliased
edges, washed-out generator output) scales ``(a, b)`` but keeps its angle, so the hue stays put.

Objects are the 8-connected regions of one colour covering at least ``min_fraction`` of the image
(:func:`detect_objects`). An object's shape is the template (circle, square, upward triangle, as the
dataset draws them, at the region's centroid and area, sharp or blurred by up to 1 px) that
overlaps its soft mask best (:func:`classify_shape`). On the dataset's own renders this reads every
object's shape and the object count right at 32 and 64 px, sharp or blurred by a 1-px Gaussian, and
at 16 px up to a 0.5-px blur (``tests/data/test_shapes.py``; docs/shapes_demo.md).

Per caption (parsed by :func:`attngan_jax.data.shapes.parse.parse_caption`) these criteria are
judged (:data:`CRITERIA`):

* ``colour_single`` (single-object captions naming a colour): that colour covers the most pixels.
* ``shape_single`` (single-object captions naming a shape): the largest object of the named colour
  (any colour if none is named) has the named shape.
* ``count_single`` (single-object captions): the image shows exactly one object.
* ``position`` (captions stating a position or a relation): every stated fact holds for the
  colour centroids - left/right/top/bottom: the centroid lies beyond the middle by ``margin``;
  center: within ``center_radius`` of the middle on both axes; relations: A's centroid is left
  of/right of/above/below B's by more than ``margin``.
* ``both_colours`` (captions naming two or more different colours): each covers at least
  ``min_fraction`` of the image and the named colours are the most covering ones (so noise with
  every hue does not pass).
* ``shape_pair`` (two-object captions naming both colours and a shape): each named shape is the
  shape of the largest object of its colour.
* ``count_pair`` (two-object captions): the image shows exactly two objects.

A colour that covers less than ``min_fraction`` of the image counts as absent. Chance levels (random
captions of the dataset) are about 1/6 (colour), 1/3 (shape), 1/10 (position) and 1/30 (both
colours).

:func:`attention_localisation` measures how much of a word's attention falls on the object it names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from attngan_jax.data.shapes.parse import CaptionSpec, parse_caption, shape_word
from attngan_jax.data.shapes.scene import (
    COLOURS,
    PALETTE,
    SHAPES,
    centroid_offset,
    shape_area,
    signed_distance,
)

CRITERIA = (
    "colour_single",
    "shape_single",
    "count_single",
    "position",
    "both_colours",
    "shape_pair",
    "count_pair",
)


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
    return _segment(image, min_chroma, max_hue_distance)[0]


def _segment(
    image: np.ndarray, min_chroma: float, max_hue_distance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`segment`'s labels (H, W), with the chroma (H, W) and hue distances (H, W, 6)."""
    hue, chroma = _opponent(to_rgb255(image))  # (H, W) each
    dist = np.abs(hue[..., None] - _PALETTE_HUES)  # (H, W, 6)
    dist = np.minimum(dist, 360.0 - dist)
    labels = np.argmin(dist, axis=-1)
    keep = (chroma >= min_chroma) & (np.min(dist, axis=-1) <= max_hue_distance)
    return np.where(keep, labels, -1), chroma, dist


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


@dataclasses.dataclass(frozen=True)
class DetectedObject:
    """One connected region of a single palette colour.

    Attributes:
        colour: its palette colour.
        fraction: its area (hard-labelled pixels) as a fraction of the image.
        centroid: ``(x, y)`` as fractions of the image side.
        shape: the best-fitting shape of :data:`~attngan_jax.data.shapes.scene.SHAPES`.
        fit: intersection over union of the region's soft mask with that shape.
        mask: (H, W) bool, the region's pixels.
    """

    colour: str
    fraction: float
    centroid: tuple[float, float]
    shape: str
    fit: float
    mask: np.ndarray = dataclasses.field(repr=False, compare=False)


def classify_shape(
    soft: np.ndarray, blurs: Sequence[float] = (0.0, 0.5, 1.0)
) -> tuple[str, float, dict[str, float]]:
    """The shape whose template best overlaps a soft object mask.

    Each template (circle, square, upward triangle as the dataset draws them) is placed at the
    mask's centroid with the mask's area, rendered with the dataset's analytic anti-aliasing and
    blurred by each of ``blurs`` (Gaussian sigmas in pixels: generated images are soft); the shape
    with the largest soft intersection over union (over the blurs) wins.

    Args:
        soft: (H, W) coverage in [0, 1] of one object (0 elsewhere).
        blurs: the template blurs tried.

    Returns:
        ``(shape, iou, {shape: iou})``.
    """
    h, w = soft.shape
    area = float(soft.sum())  # pixels
    if area <= 0:
        return SHAPES[0], 0.0, dict.fromkeys(SHAPES, 0.0)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5  # pixel centres, pixel units
    cx, cy = float((soft * xs).sum() / area), float((soft * ys).sum() / area)
    x, y = (np.arange(w) + 0.5)[None, :], (np.arange(h) + 0.5)[:, None]
    ious = {}
    for shape in SHAPES:
        r = np.sqrt(area / shape_area(shape, 1.0))
        center = (cx, cy - centroid_offset(shape, r))  # template's centroid on the mask's
        sharp = np.clip(0.5 - signed_distance(shape, r, center, x, y), 0.0, 1.0)
        ious[shape] = 0.0
        for sigma in blurs:
            t = ndimage.gaussian_filter(sharp, sigma, mode="constant") if sigma else sharp
            iou = float(np.minimum(soft, t).sum() / np.maximum(soft, t).sum())
            ious[shape] = max(ious[shape], iou)
    best = max(SHAPES, key=lambda k: ious[k])
    return best, ious[best], ious


def detect_objects(
    image: np.ndarray,
    min_fraction: float = 0.01,
    min_chroma: float = 50.0,
    max_hue_distance: float = 30.0,
) -> list[DetectedObject]:
    """The objects of an image: connected single-colour regions covering ``min_fraction`` or more.

    Regions are 8-connected components of each colour's pixels (:func:`segment`). Each region's
    soft mask is its chroma relative to the region's 90th-percentile chroma (anti-aliased edges,
    washed-out generator output) over the region grown by two pixels, and its shape is
    :func:`classify_shape` of that mask.

    Args:
        image: (H, W, 3) uint8, or float in [-1, 1].
        min_fraction: smaller regions are noise, not objects.
        min_chroma: see :func:`segment`.
        max_hue_distance: see :func:`segment`.

    Returns:
        The objects, largest first.
    """
    labels, chroma, dist = _segment(image, min_chroma, max_hue_distance)
    h, w = labels.shape
    found = []
    for k, colour in enumerate(COLOURS):
        comps, n = ndimage.label(labels == k, structure=np.ones((3, 3)))
        for c in range(1, n + 1):
            region = comps == c
            count = int(region.sum())
            if count < min_fraction * h * w:
                continue
            ref = max(float(np.percentile(chroma[region], 90)), min_chroma)
            grown = ndimage.binary_dilation(region, iterations=2) & ((labels == k) | (labels == -1))
            hue_ok = dist[..., k] <= max_hue_distance
            soft = np.where(grown & hue_ok, np.clip(chroma / ref, 0.0, 1.0), 0.0)
            shape, fit, _ = classify_shape(soft)
            ys, xs = np.nonzero(region)
            found.append(
                DetectedObject(
                    colour=colour,
                    fraction=count / (h * w),
                    centroid=(float((xs.mean() + 0.5) / w), float((ys.mean() + 0.5) / h)),
                    shape=shape,
                    fit=fit,
                    mask=region,
                )
            )
    return sorted(found, key=lambda o: -o.fraction)


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
    objects = detect_objects(image, min_fraction, min_chroma, max_hue_distance)

    def centroid(colour: str | None) -> np.ndarray | None:
        if colour is None:  # a caption naming no colour: any coloured pixel
            return foreground if fractions.sum() >= min_fraction else None
        k = COLOURS.index(colour)
        return centroids[k] if present[k] else None

    def shape_of(colour: str | None) -> str | None:
        """The shape of the largest object of ``colour`` (any colour for None)."""
        match = [o for o in objects if colour is None or o.colour == colour]
        return match[0].shape if match else None

    out: dict[str, bool] = {}
    single = len(spec.objects) == 1
    if single and spec.objects[0].colour is not None:
        k = COLOURS.index(spec.objects[0].colour)
        out["colour_single"] = bool(present[k] and np.argmax(fractions) == k)
    if single and spec.objects[0].shape is not None:
        out["shape_single"] = shape_of(spec.objects[0].colour) == spec.objects[0].shape
    if single:
        out["count_single"] = len(objects) == 1
    facts: list[bool] = []
    for obj in spec.objects:
        if obj.position is not None and (obj.colour is not None or single):
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
    if len(spec.objects) >= 2:
        out["count_pair"] = len(objects) == len(spec.objects)
        shaped = [o for o in spec.objects if o.shape is not None]
        if shaped and len(named) == len(spec.objects) and all(o.colour for o in shaped):
            out["shape_pair"] = all(shape_of(o.colour) == o.shape for o in shaped)
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


WORD_KINDS = ("colour", "shape")


def _block_mean(mask: np.ndarray, s: int) -> np.ndarray:
    """(H, W) -> (s, s) mean over blocks (H and W multiples of s), or nearest sampling upwards."""
    h, w = mask.shape
    if h % s == 0 and w % s == 0:
        return mask.reshape(s, h // s, s, w // s).mean(axis=(1, 3))
    ys = ((np.arange(s) + 0.5) * h / s).astype(int)
    xs = ((np.arange(s) + 0.5) * w / s).astype(int)
    return mask[np.ix_(ys, xs)].astype(np.float64)


def attention_localisation(
    attention: np.ndarray, words: Sequence[str], image: np.ndarray, **thresholds: float
) -> list[tuple[str, float, float]]:
    """How much of each object word's attention falls on the object it names.

    For every colour word and every shape word of a caption (a shape word belongs to the colour
    named just before it in the same noun phrase: 'a red circle', 'the blue round shape'), the
    object is the largest region of that colour that :func:`detect_objects` finds in ``image``;
    the word's localisation is the share of its attention map inside that region (the region
    taken at the map's resolution, fractional at the borders). Words whose object is not in the
    image are left out: drawing the object is what fidelity measures.

    Args:
        attention: (T, s, s) the word attention of one attending stage (word t at every query
            position; T >= len(words)).
        words: the caption's words (tokens in id order).
        image: the image that stage drew, (H, W, 3) uint8 or float in [-1, 1].
        **thresholds: keyword arguments of :func:`detect_objects`.

    Returns:
        ``(kind, inside, area)`` per scored word: ``kind`` in :data:`WORD_KINDS`, ``inside`` the
        share of the word's attention on its object, ``area`` the object's share of the map (what
        a uniform map would score).
    """
    objects = detect_objects(image, **thresholds)
    s = attention.shape[-1]
    out = []
    last_colour, since = None, 99
    for t, w in enumerate(words):
        since += 1
        if w in COLOURS:
            kind, colour, last_colour, since = "colour", w, w, 0
        elif shape_word(w) and last_colour is not None and since <= 3:
            kind, colour = "shape", last_colour
        else:
            continue
        match = [o for o in objects if o.colour == colour]
        total = float(attention[t].sum())
        if not match or total <= 0:
            continue
        region = _block_mean(match[0].mask.astype(np.float64), s)  # (s, s) in [0, 1]
        out.append((kind, float((attention[t] * region).sum() / total), float(region.mean())))
    return out
