"""Procedural "captioned shapes": a dataset AttnGAN visibly learns on a laptop CPU in minutes.

Images of one or two flat coloured shapes with captions naming their colours, shapes and either a
position or a relation. The package is layered (each module imports only those above it):

* :mod:`~attngan_jax.data.shapes.scene`: scene sampling and drawing (:func:`sample_scene`,
  :func:`render`, the colours and shapes).
* :mod:`~attngan_jax.data.shapes.captions`: caption generation and the fixed vocabulary
  (:func:`make_caption`, :data:`IXTOWORD`).
* :mod:`~attngan_jax.data.shapes.parse`: caption parsing (:func:`parse_caption`).
* :mod:`~attngan_jax.data.shapes.source`: the dataset source (:class:`ShapesSource`).
* :mod:`~attngan_jax.data.shapes.oracle`: the caption-fidelity oracle (imported on its own).

The public names of the first four are re-exported here.
"""

from attngan_jax.data.shapes.captions import (
    IXTOWORD,
    MAX_CAPTION_WORDS,
    PAIR_TEMPLATES,
    SINGLE_TEMPLATES,
    encode_caption,
    make_caption,
    make_captions,
    tokenize,
)
from attngan_jax.data.shapes.parse import CaptionSpec, ObjectSpec, parse_caption
from attngan_jax.data.shapes.scene import (
    COLOURS,
    DEFAULT_HOLDOUT,
    HALF_EXTENT,
    INVERSE_RELATION,
    NUM_CLASSES,
    PALETTE,
    POSITIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    Background,
    Scene,
    ShapeObject,
    class_id,
    render,
    sample_scene,
)
from attngan_jax.data.shapes.source import ShapesSource

__all__ = [
    "COLOURS",
    "DEFAULT_HOLDOUT",
    "HALF_EXTENT",
    "INVERSE_RELATION",
    "IXTOWORD",
    "MAX_CAPTION_WORDS",
    "NUM_CLASSES",
    "PAIR_TEMPLATES",
    "PALETTE",
    "POSITIONS",
    "RELATIONS",
    "SHAPES",
    "SINGLE_TEMPLATES",
    "SIZES",
    "Background",
    "CaptionSpec",
    "ObjectSpec",
    "Scene",
    "ShapeObject",
    "ShapesSource",
    "class_id",
    "encode_caption",
    "make_caption",
    "make_captions",
    "parse_caption",
    "render",
    "sample_scene",
    "tokenize",
]
