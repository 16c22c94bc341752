"""Captions of the captioned-shapes dataset: random English descriptions of a scene.

:func:`make_caption` fills a weighted template (:data:`SINGLE_TEMPLATES`, :data:`PAIR_TEMPLATES`)
with synonyms of the scene's colours, shapes, sizes, positions and relation. Every word a caption
can contain is known in advance: :data:`IXTOWORD` is the dataset's fixed vocabulary and
:func:`encode_caption` turns a caption into its word ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from attngan_jax.data.shapes.scene import COLOURS, INVERSE_RELATION, Scene, ShapeObject

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
