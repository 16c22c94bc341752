"""Procedural "captioned shapes": a dataset AttnGAN visibly learns on a laptop CPU in minutes.

Each image shows one or two flat shapes (circle, square, triangle; small or large; six well
separated colours) on a light, unsaturated background with a mild gradient and texture. Captions
name the colours and shapes and either the position of a single object (left, right, top, bottom,
center) or the relation between two objects (to the left of, to the right of, above, below), which
always holds geometrically: the two objects never overlap and are separated along the relation's
axis.

Every image is drawn from its own seed ``(seed, split, index)``, so any example can be regenerated
alone; train and test use different seed streams and never share an image. Colour x shape
combinations in ``holdout`` never appear (as any object) in training images but do appear in test
images, which tests composition. :func:`parse_caption` reads the facts back from a caption (ours or
a user's); the caption-fidelity oracle (:mod:`attngan_jax.data.shapes.oracle`) checks them on
images.

Coordinates are fractions of the image side: ``(x, y)`` with x to the right and y downwards.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence

import numpy as np

from attngan_jax.data.base import Example

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
# Hues (opponent-space angle, see shapes_oracle) 356, 129, 224, 59, 281, 29 degrees: >= 29 apart.
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


def _signed_distance(obj: ShapeObject, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact signed distance to the shape's outline (negative inside), image-side units.

    Args:
        obj: the shape.
        x: (1, S) pixel-centre x coordinates.
        y: (S, 1) pixel-centre y coordinates.

    Returns:
        (S, S) signed distances.
    """
    r = HALF_EXTENT[obj.size]
    px, py = x - obj.center[0], y - obj.center[1]
    if obj.shape == "circle":
        return np.hypot(px, py) - r
    if obj.shape == "square":
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


# ------------------------------------------------------------------------------------- captions

MAX_CAPTION_WORDS = 18
_SIZE_WORDS = {"small": ("small", "small", "tiny", "little"), "large": ("large", "large", "big")}
_SHAPE_WORDS = {
    "circle": ("circle", "circle", "disc", "round shape"),
    "square": ("square", "square", "box", "square shape"),
    "triangle": ("triangle", "triangle", "triangular shape"),
}
_POSITION_PHRASES = {
    "left": (
        "on the left",
        "on the left side",
        "at the left",
        "in the left half",
        "on the left side of the picture",
    ),
    "right": (
        "on the right",
        "on the right side",
        "at the right",
        "in the right half",
        "on the right side of the picture",
    ),
    "top": ("at the top", "near the top", "in the upper part", "at the top of the image"),
    "bottom": (
        "at the bottom",
        "near the bottom",
        "in the lower part",
        "at the bottom of the picture",
    ),
    "center": (
        "in the middle",
        "in the center",
        "in the centre",
        "at the center of the image",
        "in the middle of the picture",
    ),
}
_RELATION_PHRASES = {
    "left": ("to the left of", "left of", "on the left of"),
    "right": ("to the right of", "right of", "on the right of"),
    "above": ("above", "on top of", "over"),
    "below": ("below", "under", "beneath"),
}
_RELATION_POSITIONS = {
    "left": ("left", "right"),
    "right": ("right", "left"),
    "above": ("top", "bottom"),
    "below": ("bottom", "top"),
}
# (template, weight); {np} = noun phrase with article, {pos} position, {rel} relation phrase.
SINGLE_TEMPLATES = (
    ("{np} {pos}", 2.0),
    ("there is {np} {pos}", 1.0),
    ("the picture shows {np} {pos}", 1.0),
    ("{pos} there is {np}", 1.0),
    ("{np} is {pos}", 1.0),
    ("an image of {np} {pos}", 1.0),
    ("we can see {np} {pos}", 1.0),
    ("{np} {pos} on a plain background", 1.0),
    ("{np} on a plain background", 0.5),  # no position
)
PAIR_TEMPLATES = (
    ("{np1} {rel} {np2}", 2.0),
    ("there is {np1} {rel} {np2}", 1.0),
    ("the picture shows {np1} {rel} {np2}", 1.0),
    ("{np1} is {rel} {np2}", 1.0),
    ("we can see {np1} {rel} {np2}", 1.0),
    ("two shapes: {np1} {rel} {np2}", 1.0),
    ("{np1} {pos1} and {np2} {pos2}", 1.0),
    ("{np1} and {np2}, the {c1} one is {rel} the {c2} one", 1.0),
    ("{np1} and {np2}", 0.5),  # no relation
)
_WORD_RE = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    r"""Lower-cased word tokens (``\w+`` runs, punctuation dropped), as the original tokeniser."""
    return _WORD_RE.findall(text.lower())


def _vocabulary_words() -> list[str]:
    """Every word our captions can contain: '<end>' then the sorted words."""
    texts = [t for t, _ in SINGLE_TEMPLATES + PAIR_TEMPLATES] + list(COLOURS)
    for table in (_SIZE_WORDS, _SHAPE_WORDS, _POSITION_PHRASES, _RELATION_PHRASES):
        texts += [p for phrases in table.values() for p in phrases]
    words = {w for t in texts for w in tokenize(re.sub(r"\{\w+\}", " ", t))} | {"a", "an"}
    return ["<end>", *sorted(words)]


IXTOWORD = _vocabulary_words()
_WORDTOIX = {w: i for i, w in enumerate(IXTOWORD)}


def encode_caption(text: str) -> list[int]:
    """Word ids of one of our captions (raises KeyError naming an unknown word)."""
    try:
        return [_WORDTOIX[w] for w in tokenize(text)]
    except KeyError as e:
        raise KeyError(
            f"word {e.args[0]!r} of caption {text!r} is not in the shapes vocabulary"
        ) from None


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[rng.integers(len(options))]


def _noun_phrase(obj: ShapeObject, rng: np.random.Generator) -> str:
    """'a small red circle', 'an orange disc', ... (size named half of the time)."""
    words = [_pick(rng, _SIZE_WORDS[obj.size])] if rng.random() < 0.5 else []
    text = " ".join([*words, obj.colour, _pick(rng, _SHAPE_WORDS[obj.shape])])
    return ("an " if text[0] in "aeiou" else "a ") + text


def make_caption(scene: Scene, rng: np.random.Generator, template: int | None = None) -> str:
    """One random caption of ``scene`` (at most :data:`MAX_CAPTION_WORDS` words).

    Args:
        scene: the scene to describe.
        rng: numpy generator choosing template, synonyms, optional size and object order.
        template: index into :data:`SINGLE_TEMPLATES` / :data:`PAIR_TEMPLATES` (by the number of
            objects); None draws one by weight.

    Returns:
        The caption text (lower case, may contain a comma or colon).
    """
    table = SINGLE_TEMPLATES if len(scene.objects) == 1 else PAIR_TEMPLATES
    if template is None:
        weights = np.array([w for _, w in table])
        template = int(rng.choice(len(table), p=weights / weights.sum()))
    fmt = table[template][0]
    while True:
        if len(scene.objects) == 1:
            fields = {
                "np": _noun_phrase(scene.objects[0], rng),
                "pos": _pick(rng, _POSITION_PHRASES[scene.position]),
            }
        else:
            a, b, rel = scene.objects[0], scene.objects[1], scene.relation
            if rng.random() < 0.5:  # describe it from the other object's side
                a, b, rel = b, a, INVERSE_RELATION[rel]
            pos_a, pos_b = _RELATION_POSITIONS[rel]
            fields = {
                "np1": _noun_phrase(a, rng),
                "np2": _noun_phrase(b, rng),
                "rel": _pick(rng, _RELATION_PHRASES[rel]),
                "pos1": _pick(rng, _POSITION_PHRASES[pos_a]),
                "pos2": _pick(rng, _POSITION_PHRASES[pos_b]),
                "c1": a.colour,
                "c2": b.colour,
            }
        text = fmt.format(**fields)
        if len(tokenize(text)) <= MAX_CAPTION_WORDS:
            return text


def make_captions(scene: Scene, rng: np.random.Generator, n: int) -> list[str]:
    """``n`` captions of ``scene``, distinct where the templates allow."""
    out: list[str] = []
    for _ in range(50 * n):
        text = make_caption(scene, rng)
        if text not in out:
            out.append(text)
            if len(out) == n:
                return out
    while len(out) < n:
        out.append(make_caption(scene, rng))
    return out


# -------------------------------------------------------------------------------------- parsing

_P_SHAPE = {
    "circle": "circle",
    "disc": "circle",
    "disk": "circle",
    "round": "circle",
    "dot": "circle",
    "ball": "circle",
    "square": "square",
    "box": "square",
    "block": "square",
    "rectangle": "square",
    "triangle": "triangle",
    "triangular": "triangle",
}
_P_SIZE = {
    "small": "small",
    "tiny": "small",
    "little": "small",
    "large": "large",
    "big": "large",
    "huge": "large",
}
_P_FILLER = {"shape", "shaped", "one", "object"}
_P_POSITION = {
    "left": "left",
    "right": "right",
    "top": "top",
    "upper": "top",
    "bottom": "bottom",
    "lower": "bottom",
    "middle": "center",
    "center": "center",
    "centre": "center",
}
_P_RELATION = {
    "above": "above",
    "over": "above",
    "below": "below",
    "under": "below",
    "beneath": "below",
    "underneath": "below",
}
_POSITION_TO_RELATION = {"left": "left", "right": "right", "top": "above", "bottom": "below"}
_ARTICLES = {"a", "an", "the"}


@dataclasses.dataclass
class ObjectSpec:
    """What a caption says about one object (None: not said)."""

    colour: str | None = None
    shape: str | None = None
    size: str | None = None
    position: str | None = None


@dataclasses.dataclass
class CaptionSpec:
    """The facts a caption states.

    Attributes:
        objects: the distinct objects in order of mention, except that a relation's subject comes
            first and its object second.
        relation: ``objects[0]`` is <relation> ``objects[1]`` (:data:`RELATIONS`), or None. Two
            objects placed on opposite sides ('a red circle on the left and a blue square on the
            right') also give a relation.
    """

    objects: list[ObjectSpec] = dataclasses.field(default_factory=list)
    relation: str | None = None

    @property
    def position(self) -> str | None:
        """The position of a single-object caption, else None."""
        return self.objects[0].position if len(self.objects) == 1 else None

    def colours(self) -> list[str]:
        """The named colours in object order."""
        return [o.colour for o in self.objects if o.colour is not None]


def _shape_word(token: str) -> str | None:
    if token in _P_SHAPE:
        return _P_SHAPE[token]
    return _P_SHAPE.get(token[:-1]) if token.endswith("s") else None  # plural


def parse_caption(text: str) -> CaptionSpec:
    """Reads the colours, shapes, sizes, positions and relation a caption states.

    Works on every template of :func:`make_caption` and on simple free captions ('a red circle on
    the left', 'a big blue square under a green disc'). Anything it cannot read is left None.

    Args:
        text: the caption.

    Returns:
        The :class:`CaptionSpec`.
    """
    tokens = tokenize(text)
    n = len(tokens)
    # 1. Mentions: maximal runs of size/colour/shape/filler words naming a colour or a shape.
    mentions: list[tuple[int, int, ObjectSpec]] = []  # (start, end, facts)
    i = 0
    while i < n:
        j, spec = i, ObjectSpec()
        while j < n and (
            tokens[j] in COLOURS
            or tokens[j] in _P_SIZE
            or tokens[j] in _P_FILLER
            or _shape_word(tokens[j])
        ):
            t = tokens[j]
            spec.colour = spec.colour or (t if t in COLOURS else None)
            spec.shape = spec.shape or _shape_word(t)
            spec.size = spec.size or _P_SIZE.get(t)
            j += 1
        if spec.colour or spec.shape:
            mentions.append((i, j, spec))
        i = max(j, i + 1)

    def before(k: int) -> int | None:
        idx = [m for m, (_, end, _) in enumerate(mentions) if end <= k]
        return idx[-1] if idx else None

    def after(k: int) -> int | None:
        idx = [m for m, (start, _, _) in enumerate(mentions) if start > k]
        return idx[0] if idx else None

    # 2. Position words attach to the preceding mention (else the following one); 'X of <object>'
    # and above/below/over/under words between two mentions are relations.
    positions: dict[int, str] = {}
    relations: list[tuple[int, str, int]] = []
    starts = {start: m for m, (start, _, _) in enumerate(mentions)}
    for k, t in enumerate(tokens):
        if t in _P_RELATION:
            s, o = before(k), after(k)
            if s is not None and o is not None:
                relations.append((s, _P_RELATION[t], o))
            continue
        if t not in _P_POSITION:
            continue
        value, q = _P_POSITION[t], k + 1
        q += q < n and tokens[q] == "side"
        if q < n and tokens[q] == "of" and value in _POSITION_TO_RELATION:
            q += 1
            while q < n and tokens[q] in _ARTICLES:
                q += 1
            s = before(k)
            if q in starts and s is not None:
                relations.append((s, _POSITION_TO_RELATION[value], starts[q]))
                continue
        m = before(k)
        m = after(k) if m is None else m
        if m is not None:
            positions.setdefault(m, value)
    # 3. Mentions -> objects: a mention repeating an earlier colour (and a compatible shape, e.g.
    # 'the red one') refers to that object.
    objects: list[ObjectSpec] = []
    owner: list[int] = []
    for m, (_, _, spec) in enumerate(mentions):
        ref = next(
            (
                o
                for o, obj in enumerate(objects)
                if spec.colour is not None
                and obj.colour == spec.colour
                and (spec.shape is None or obj.shape in (None, spec.shape))
            ),
            None,
        )
        if ref is None:
            objects.append(ObjectSpec(spec.colour, spec.shape, spec.size))
            ref = len(objects) - 1
        obj = objects[ref]
        obj.shape, obj.size = obj.shape or spec.shape, obj.size or spec.size
        if m in positions and obj.position is None:
            obj.position = positions[m]
        owner.append(ref)
    # 4. The first relation between two different objects; its subject goes first.
    relation = None
    for s, rel, o in relations:
        s, o = owner[s], owner[o]
        if s != o:
            rest = [obj for k, obj in enumerate(objects) if k not in (s, o)]
            objects, relation = [objects[s], objects[o], *rest], rel
            break
    if relation is None and len(objects) == 2:
        pair = (objects[0].position, objects[1].position)
        if pair in (("left", "right"), ("right", "left"), ("top", "bottom"), ("bottom", "top")):
            relation = _POSITION_TO_RELATION[pair[0]]
    return CaptionSpec(objects, relation)


# --------------------------------------------------------------------------------------- source


class ShapesSource:
    """The captioned-shapes dataset as a :class:`~attngan_jax.data.base.Source`.

    Example ``index`` of ``split`` is generated from the seed ``(seed, split id, index)`` alone:
    stream 0 draws the scene, 1 the captions, 2 the pixel noise.

    Args:
        num_train: number of training images.
        num_test: number of test images.
        image_size: rendered side in pixels (16..256).
        captions_per_image: captions per image.
        seed: dataset seed.
        holdout: ``(colour, shape)`` pairs never shown in training images (any object); test
            images draw from all combinations.
        two_object_prob: fraction of two-object scenes.
    """

    name = "shapes"
    _SPLIT_IDS = {"train": 0, "test": 1}

    def __init__(
        self,
        num_train: int = 2000,
        num_test: int = 500,
        image_size: int = 64,
        captions_per_image: int = 10,
        seed: int = 0,
        holdout: frozenset | set = DEFAULT_HOLDOUT,
        two_object_prob: float = 0.5,
    ):
        if not 16 <= image_size <= 256:
            raise ValueError(f"image_size must be in [16, 256], got {image_size}")
        holdout = frozenset((str(c), str(s)) for c, s in holdout)
        bad = [p for p in holdout if p[0] not in COLOURS or p[1] not in SHAPES]
        if bad:
            raise ValueError(
                f"holdout pairs must be (colour, shape) of {COLOURS} x {SHAPES}: {bad}"
            )
        if len({c for c in COLOURS for s in SHAPES if (c, s) not in holdout}) < 2:
            raise ValueError("holdout must leave at least two colours for two-object scenes")
        if captions_per_image < 1 or num_train < 0 or num_test < 0 or seed < 0:
            raise ValueError("captions_per_image >= 1 and num_train, num_test, seed >= 0 required")
        self.num_train, self.num_test = num_train, num_test
        self.image_size, self.captions_per_image = image_size, captions_per_image
        self.seed, self.holdout, self.two_object_prob = seed, holdout, two_object_prob

    def vocabulary(self):
        """The fixed shapes :class:`~attngan_jax.data.vocab.Vocabulary` (:data:`IXTOWORD`)."""
        from attngan_jax.data.vocab import Vocabulary

        return Vocabulary(IXTOWORD)

    def splits(self) -> list[str]:
        """``['train', 'test']``."""
        return ["train", "test"]

    def num_examples(self, split: str) -> int:
        """Number of images in ``split``."""
        if split not in self._SPLIT_IDS:
            raise ValueError(f"unknown split {split!r}; expected one of {self.splits()}")
        return self.num_train if split == "train" else self.num_test

    def _rng(self, split: str, index: int, stream: int) -> np.random.Generator:
        if not 0 <= index < self.num_examples(split):
            raise IndexError(f"{split} index {index} out of range [0, {self.num_examples(split)})")
        return np.random.default_rng([self.seed, self._SPLIT_IDS[split], index, stream])

    def scene(self, split: str, index: int) -> Scene:
        """The :class:`Scene` of example ``index``."""
        holdout = self.holdout if split == "train" else frozenset()
        return sample_scene(self._rng(split, index, 0), holdout, self.two_object_prob)

    def caption_texts(self, split: str, index: int) -> list[str]:
        """The raw caption strings of example ``index`` (same order as its ``captions``)."""
        return make_captions(
            self.scene(split, index), self._rng(split, index, 1), self.captions_per_image
        )

    def is_heldout(self, split: str, index: int) -> bool:
        """Whether an object of example ``index`` has a held-out colour x shape combination."""
        return any((o.colour, o.shape) in self.holdout for o in self.scene(split, index).objects)

    def example(self, split: str, index: int) -> Example:
        """Example ``index`` of ``split``: image at ``image_size``, caption ids, class id."""
        scene = self.scene(split, index)
        first = scene.objects[0]
        return Example(
            key=f"{split}/{index:06d}",
            image=render(scene, self.image_size, self._rng(split, index, 2)),
            captions=[encode_caption(c) for c in self.caption_texts(split, index)],
            class_id=class_id(first.colour, first.shape),
        )

    def examples(self, split: str) -> Iterator[Example]:
        """Yields the split's examples in index order."""
        for index in range(self.num_examples(split)):
            yield self.example(split, index)
