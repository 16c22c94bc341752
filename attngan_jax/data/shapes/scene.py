"""Scenes of the captioned-shapes dataset: what an image contains, and how it is drawn.

Each image shows one or two flat shapes (circle, square, triangle; small or large; six well
separated colours) on a light, unsaturated background with a mild gradient and texture. A
single object sits at a position (left, right, top, bottom, center); two objects stand in a
relation (to the left of, to the right of, above, below) that always holds geometrically: the two
objects never overlap and are separated along the relation's axis.

:func:`sample_scene` draws a :class:`Scene` from a numpy generator and :func:`render` draws it at
any size.

Coordinates are fractions of the image side: ``(x, y)`` with x to the right and y downwards.
"""

from __future__ import annotations

import dataclasses

import numpy as np

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
# Hues (opponent-space angle, see oracle.py) 356, 129, 224, 59, 281, 29 degrees: >= 29 apart.
PALETTE = {
    "red": (215, 35, 50),
    "green": (40, 160, 60),
    "blue": (40, 90, 215),
    "yellow": (225, 220, 40),
    "purple": (145, 55, 190),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "center")
RELATIONS = ("left", "right", "above", "below")  # objects[0] is <relation> objects[1]
INVERSE_RELATION = {"left": "right", "right": "left", "above": "below", "below": "above"}
DEFAULT_HOLDOUT = frozenset({("purple", "triangle"), ("orange", "square")})
NUM_CLASSES = len(COLOURS) * len(SHAPES)

HALF_EXTENT = {"small": 0.11, "large": 0.17}  # object "radius" as a fraction of the image side
_SQUARE_HALF = 0.88  # square half side / radius (about the circle's area)
_TRIANGLE_HALF = 1.13  # equilateral triangle half side / radius
_SQRT3 = float(np.sqrt(3.0))
# Single objects: (x range, y range) of the bounding-box centre per position.
_SINGLE_RANGES = {
    "left": ((0.20, 0.30), (0.40, 0.60)),
    "right": ((0.70, 0.80), (0.40, 0.60)),
    "top": ((0.40, 0.60), (0.20, 0.30)),
    "bottom": ((0.40, 0.60), (0.70, 0.80)),
    "center": ((0.44, 0.56), (0.44, 0.56)),
}
_NEAR, _FAR, _ACROSS = (0.20, 0.32), (0.68, 0.80), (0.35, 0.65)  # two-object centre ranges
_MIN_GAP = 0.02  # free space between two objects along the relation's axis


@dataclasses.dataclass(frozen=True)
class ShapeObject:
    """One flat shape.

    Attributes:
        colour: one of :data:`COLOURS`.
        shape: one of :data:`SHAPES`.
        size: ``'small'`` or ``'large'``.
        center: ``(x, y)`` centre of the bounding box, fractions of the image side (y down).
    """

    colour: str
    shape: str
    size: str
    center: tuple[float, float]

    def half_size(self) -> tuple[float, float]:
        """Half width and half height of the bounding box (fractions of the image side)."""
        r = HALF_EXTENT[self.size]
        if self.shape == "square":
            return _SQUARE_HALF * r, _SQUARE_HALF * r
        if self.shape == "triangle":
            return _TRIANGLE_HALF * r, _TRIANGLE_HALF * r * _SQRT3 / 2
        return r, r

    def bbox(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of the bounding box."""
        hw, hh = self.half_size()
        return self.center[0] - hw, self.center[1] - hh, self.center[0] + hw, self.center[1] + hh


@dataclasses.dataclass(frozen=True)
class Background:
    """Light neutral background: base grey (slightly tinted), linear gradient, low-frequency wave.

    Attributes:
        rgb: base colour (0..255), channels within a few levels of each other.
        gradient: ``(gx, gy)`` change in grey level across the image along x and y.
        wave: ``(fx, fy, phase, amplitude)`` of ``amplitude * sin(2 pi (fx x + fy y) + phase)``.
    """

    rgb: tuple[float, float, float] = (225.0, 225.0, 225.0)
    gradient: tuple[float, float] = (0.0, 0.0)
    wave: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class Scene:
    """One image's content.

    Attributes:
        objects: one or two :class:`ShapeObject` (two objects have different colours).
        position: for one object, one of :data:`POSITIONS`; else None.
        relation: for two objects, ``objects[0]`` is <relation> ``objects[1]`` (:data:`RELATIONS`).
        background: the :class:`Background`.
    """

    objects: tuple[ShapeObject, ...]
    position: str | None = None
    relation: str | None = None
    background: Background = Background()


def class_id(colour: str, shape: str) -> int:
    """DAMSM class of a colour x shape combination, in ``[0, 18)``."""
    return COLOURS.index(colour) * len(SHAPES) + SHAPES.index(shape)


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def _sample_kind(
    rng: np.random.Generator, holdout: frozenset, exclude_colour: str | None = None
) -> tuple[str, str, str]:
    """Colour, shape, size avoiding ``holdout`` combinations and ``exclude_colour``."""
    while True:
        colour = COLOURS[rng.integers(len(COLOURS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        size = SIZES[rng.integers(len(SIZES))]
        if (colour, shape) not in holdout and colour != exclude_colour:
            return colour, shape, size


def _inside(obj: ShapeObject) -> bool:
    x0, y0, x1, y1 = obj.bbox()
    return x0 >= 0.0 and y0 >= 0.0 and x1 <= 1.0 and y1 <= 1.0


def sample_scene(
    rng: np.random.Generator,
    holdout: frozenset = frozenset(),
    two_object_prob: float = 0.5,
) -> Scene:
    """Draws a random scene.

    Args:
        rng: numpy generator (the only source of randomness).
        holdout: ``(colour, shape)`` pairs that no object of the scene may have.
        two_object_prob: probability of a two-object scene.

    Returns:
        The :class:`Scene`; positions and relations hold geometrically, objects never overlap.
    """
    background = Background(
        rgb=tuple(float(v) for v in rng.uniform(205, 238) + rng.uniform(-5, 5, 3)),
        gradient=(float(rng.uniform(-12, 12)), float(rng.uniform(-12, 12))),
        wave=(
            float(rng.uniform(0.5, 3)),
            float(rng.uniform(0.5, 3)),
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(0, 3)),
        ),
    )
    if rng.random() >= two_object_prob:
        colour, shape, size = _sample_kind(rng, holdout)
        position = POSITIONS[rng.integers(len(POSITIONS))]
        xr, yr = _SINGLE_RANGES[position]
        while True:
            obj = ShapeObject(colour, shape, size, (_uniform(rng, xr), _uniform(rng, yr)))
            if _inside(obj):
                return Scene((obj,), position=position, background=background)
    relation = RELATIONS[rng.integers(len(RELATIONS))]
    kind_a = _sample_kind(rng, holdout)
    kind_b = _sample_kind(rng, holdout, exclude_colour=kind_a[0])
    axis = 0 if relation in ("left", "right") else 1
    a_first = relation in ("left", "above")  # A has the smaller coordinate along the axis
    while True:
        along = [_uniform(rng, _NEAR), _uniform(rng, _FAR)]
        if not a_first:
            along.reverse()
        centers = []
        for k in range(2):
            c = [0.0, 0.0]
            c[axis], c[1 - axis] = along[k], _uniform(rng, _ACROSS)
            centers.append((c[0], c[1]))
        a = ShapeObject(*kind_a, centers[0])
        b = ShapeObject(*kind_b, centers[1])
        lo, hi = (a, b) if a_first else (b, a)
        gap = hi.bbox()[axis] - lo.bbox()[axis + 2]  # hi's near edge - lo's far edge
        if gap >= _MIN_GAP and _inside(a) and _inside(b):
            return Scene((a, b), relation=relation, background=background)


# ------------------------------------------------------------------------------------ rendering


def shape_area(shape: str, radius: float) -> float:
    """Area of a shape of "radius" ``radius`` (:data:`HALF_EXTENT` units), same units squared."""
    if shape == "circle":
        return float(np.pi * radius**2)
    if shape == "square":
        return float((2 * _SQUARE_HALF * radius) ** 2)
    return float(_SQRT3 / 4 * (2 * _TRIANGLE_HALF * radius) ** 2)  # equilateral triangle


def centroid_offset(shape: str, radius: float) -> float:
    """How far (y down) a shape's centroid lies below its bounding box's centre."""
    return _TRIANGLE_HALF * radius / (2 * _SQRT3) if shape == "triangle" else 0.0


def signed_distance(
    shape: str, radius: float, center: tuple[float, float], x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Exact signed distance to a shape's outline (negative inside), in the units of x and y.

    Args:
        shape: one of :data:`SHAPES`.
        radius: the shape's "radius" (:data:`HALF_EXTENT` of its size, or any other value).
        center: ``(x, y)`` centre of its bounding box.
        x: (1, S) pixel-centre x coordinates.
        y: (S, 1) pixel-centre y coordinates.

    Returns:
        (S, S) signed distances.
    """
    r = radius
    px, py = x - center[0], y - center[1]
    if shape == "circle":
        return np.hypot(px, py) - r
    if shape == "square":
        qx, qy = np.abs(px) - _SQUARE_HALF * r, np.abs(py) - _SQUARE_HALF * r
        outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
        return outside + np.minimum(np.maximum(qx, qy), 0.0)
    # Equilateral triangle pointing up, half side h (Quilez's exact SDF, y up, centroid at 0); the
    # bounding box's centre is h / (2 sqrt 3) above the centroid.
    h = _TRIANGLE_HALF * r
    px = np.abs(px) - h + 0.0 * py  # (S, S)
    py = -py + h / (2 * _SQRT3) + h / _SQRT3 + 0.0 * px
    flip = px + _SQRT3 * py > 0.0
    px, py = (
        np.where(flip, (px - _SQRT3 * py) / 2, px),
        np.where(flip, (-_SQRT3 * px - py) / 2, py),
    )
    px = px - np.clip(px, -2 * h, 0.0)
    return -np.hypot(px, py) * np.sign(py)


def _signed_distance(obj: ShapeObject, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`signed_distance` of one object of a scene (image-side units)."""
    return signed_distance(obj.shape, HALF_EXTENT[obj.size], obj.center, x, y)


def render(
    scene: Scene, size: int, rng_or_seed: np.random.Generator | int | None = None
) -> np.ndarray:
    """Draws a scene at ``size`` x ``size`` pixels.

    Edges are anti-aliased analytically (coverage = signed distance clipped to one pixel), and the
    background is defined in continuous coordinates, so the same scene looks the same at every size
    (a 256 render averaged over 4x4 blocks matches the 64 render).

    Args:
        scene: what to draw.
        size: output side in pixels (e.g. 64, 128, 256).
        rng_or_seed: generator or seed of a faint grey pixel noise (std 1.5 levels); None: none.

    Returns:
        uint8 array (size, size, 3).
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    t = (np.arange(size, dtype=np.float64) + 0.5) / size
    x, y = t[None, :], t[:, None]  # (1, S), (S, 1)
    bg = scene.background
    fx, fy, phase, amp = bg.wave
    shade = bg.gradient[0] * (x - 0.5) + bg.gradient[1] * (y - 0.5)
    shade = shade + amp * np.sin(2 * np.pi * (fx * x + fy * y) + phase)  # (S, S)
    img = np.asarray(bg.rgb, np.float64)[None, None, :] + shade[..., None]  # (S, S, 3)
    for obj in scene.objects:
        cover = np.clip(0.5 - _signed_distance(obj, x, y) * size, 0.0, 1.0)[..., None]
        img = img * (1.0 - cover) + cover * np.asarray(PALETTE[obj.colour], np.float64)
    if rng_or_seed is not None:
        rng = np.random.default_rng(rng_or_seed)
        img = img + rng.normal(0.0, 1.5, (size, size, 1))  # grey noise keeps hues unchanged
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
