"""Caption parsing: the facts (colours, shapes, sizes, positions, relation) a caption states.

:func:`parse_caption` reads a :class:`CaptionSpec` back from any caption, ours
(:mod:`attngan_jax.data.shapes.captions`) or a user's; the caption-fidelity oracle
(:mod:`attngan_jax.data.shapes.oracle`) checks those facts on images.
"""

from __future__ import annotations

import dataclasses

from attngan_jax.data.shapes.captions import tokenize
from attngan_jax.data.shapes.scene import COLOURS

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


def shape_word(token: str) -> str | None:
    """The shape a word names ('disc' -> 'circle', plurals too), or None."""
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
            or shape_word(tokens[j])
        ):
            t = tokens[j]
            spec.colour = spec.colour or (t if t in COLOURS else None)
            spec.shape = spec.shape or shape_word(t)
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
