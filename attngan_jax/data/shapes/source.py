"""The captioned-shapes dataset source (:class:`ShapesSource`) and its vocabulary.

Every image is drawn from its own seed ``(seed, split, index)``, so any example can be regenerated
alone; train and test use different seed streams and never share an image. Colour x shape
combinations in ``holdout`` never appear (as any object) in training images but do appear in test
images, which tests composition.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from attngan_jax.data.base import Example
from attngan_jax.data.shapes.captions import IXTOWORD, encode_caption, make_captions
from attngan_jax.data.shapes.scene import (
    COLOURS,
    DEFAULT_HOLDOUT,
    SHAPES,
    Scene,
    class_id,
    render,
    sample_scene,
)


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
