"""The contract between dataset sources and the input pipeline.

A *source* (CUB/COCO in the original layout, a custom caption folder, the procedural shapes) turns
files on disk into :class:`Example` records with captions already tokenised into word ids of its
:class:`~attngan_jax.data.vocab.Vocabulary`. Sources of image files also have
``stored_examples(split, workers)``: the same examples with each image as the
:class:`~attngan_jax.data.image_files.StoredImage` a record keeps (the file's bytes and the crop to
apply when loading), checked in worker processes. The TFDS builders serialise those records to ArrayRecord;
the grain pipeline reads them back and applies the per-example randomness of the original loader
(caption choice, word dropping, resize 76/64, random crop, flip, pyramid).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from attngan_jax.data.image_files import StoredImage


@dataclasses.dataclass
class Example:
    """One image with all of its captions.

    Attributes:
        key: stable identifier, e.g. ``'002.Laysan_Albatross/Laysan_Albatross_0002_1027'``.
        image: uint8 RGB array (H, W, 3); already cropped where the dataset defines a crop (the
            CUB bounding box ×0.75 crop of the original loader). From ``stored_examples``: a
            :class:`~attngan_jax.data.image_files.StoredImage` instead (file bytes + crop box).
        captions: the image's captions as lists of word ids (no padding, no end token), in file order.
        class_id: class label used by the DAMSM class masking (species for CUB; for datasets without
            classes a unique id per image, so nothing is masked).
    """

    key: str
    image: np.ndarray | StoredImage
    captions: list[list[int]]
    class_id: int


class Source(Protocol):
    """What every dataset source provides."""

    name: str
    """Short dataset name (``birds``, ``coco``, ``custom``, ``shapes``)."""

    def vocabulary(self):
        """The :class:`~attngan_jax.data.vocab.Vocabulary` (index 0 is the padding/end token)."""

    def splits(self) -> list[str]:
        """Available split names, e.g. ``['train', 'test']``."""

    def num_examples(self, split: str) -> int:
        """Number of images in ``split``."""

    def examples(self, split: str) -> Iterator[Example]:
        """Yields the split's examples in a deterministic order."""
