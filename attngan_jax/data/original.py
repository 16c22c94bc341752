"""CUB-200-2011 (birds) and COCO-2014 in the layout of the original release (reference §12.1).

::

    DATA_DIR/captions.pickle                [train_caps, test_caps, ixtoword, wordtoix] (optional)
    DATA_DIR/{train,test}/filenames.pickle  image keys
    DATA_DIR/{train,test}/class_info.pickle class ids (optional; missing -> 0..N-1 as the original)
    DATA_DIR/text/<key>.txt                 raw captions (needed only without captions.pickle)
    DATA_DIR/CUB_200_2011/images/<key>.jpg  birds images; plus CUB_200_2011/images.txt and
                                            CUB_200_2011/bounding_boxes.txt for the crop
    DATA_DIR/images/<key>.jpg               coco images

With ``captions.pickle`` present its vocabulary and caption id lists are used unchanged (needed for
the released text encoders); caption j of image i is ``captions[i*K + j]``. Without it the captions
are tokenised from ``text/`` and a deterministic vocabulary is built and saved as ``vocab.json``
(re-used on later runs); we never write a ``captions.pickle``: the captions stay in memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np

from attngan_jax.data import official
from attngan_jax.data.base import Example
from attngan_jax.data.image_files import (  # noqa: F401  (load_rgb, _to_rgb: re-exported)
    ImageTask,
    _to_rgb,
    bbox_crop_box,
    load_rgb,
    read_stored_images,
)
from attngan_jax.data.safe_pickle import load_pickle
from attngan_jax.data.text import DataError, read_caption_file
from attngan_jax.data.vocab import Vocabulary, load_captions_pickle

logger = logging.getLogger(__name__)

_SPLITS = ("train", "test")
_META_HINT = {"birds": official.CUB_HINT, "coco": official.COCO_HINT}
SKIP_HINT = (
    "or skip unreadable images (skip_bad_images=True; from the command line: python -m "
    "attngan_jax.data.prepare ... --source_kwargs='{\"skip_bad_images\": true}')"
)
_IMAGE_HINT = {
    "birds": "download CUB_200_2011.tgz and extract it into DATA_DIR",
    "coco": "put the COCO 2014 images into DATA_DIR/train2014 and DATA_DIR/val2014 (or, with the "
    "release's metadata, all of them into DATA_DIR/images)",
}


def crop_to_bbox(image: np.ndarray, bbox: Sequence[int]) -> np.ndarray:
    """Crops (H, W, 3) ``image`` to :func:`bbox_crop_box`; same pixels as PIL's ``crop``."""
    left, top, right, bottom = bbox_crop_box(bbox, image.shape[1], image.shape[0])
    return image[top:bottom, left:right]  # (bottom-top, right-left, 3)


def read_cub_bounding_boxes(cub_dir: str | os.PathLike) -> dict[str, tuple[int, int, int, int]]:
    """Parses ``images.txt`` (``<id> <path>.jpg``) and ``bounding_boxes.txt`` (``<id> x y w h``).

    Values are truncated to int as the original's ``pandas ... .astype(int)``. The original paired
    the two files by row; here they are paired by image id (the same for CUB, whose files are both
    sorted by id) and every id must occur in both.

    Returns:
        key (path without ``.jpg``) -> ``(x, y, w, h)``.
    """
    cub_dir = os.fspath(cub_dir)
    paths = {}
    for line_no, parts in _read_table(os.path.join(cub_dir, "images.txt"), 2):
        paths[parts[0]] = (line_no, parts[1])
    boxes = {}
    bbox_file = os.path.join(cub_dir, "bounding_boxes.txt")
    for line_no, parts in _read_table(bbox_file, 5):
        try:
            box = tuple(int(float(v)) for v in parts[1:])
        except (ValueError, OverflowError):
            raise DataError(f"{bbox_file}: line {line_no}: non-numeric box {parts[1:]}") from None
        if box[2] <= 0 or box[3] <= 0 or box[0] < 0 or box[1] < 0:
            raise DataError(
                f"{bbox_file}: line {line_no}: box {list(box)} is not 'x y width height' with "
                "x, y >= 0 and a positive size; restore the file from CUB_200_2011.tgz"
            )
        boxes[parts[0]] = box
    missing = sorted(set(paths) - set(boxes))
    if missing:
        raise DataError(f"{bbox_file}: no box for image id(s) {missing[:10]} of images.txt")
    return {os.path.splitext(p)[0]: boxes[i] for i, (_, p) in paths.items()}


def _read_table(path: str, columns: int) -> Iterator[tuple[int, list[str]]]:
    """Yields (line number, fields) of a whitespace-separated file, checking the column count."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        raise DataError(f"{path}: not found; {_IMAGE_HINT['birds']}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text file ({e}); {_IMAGE_HINT['birds']}") from None
    for line_no, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != columns:
            raise DataError(f"{path}: line {line_no}: expected {columns} fields, got {line!r}")
        yield line_no, parts


class _OriginalLayoutSource:
    """Shared loader of the original layout; see :class:`CUBSource` and :class:`COCOSource`."""

    name = ""
    image_dir = ""
    _official: official.OfficialLayout | None = None  # set by subclasses before __init__

    def __init__(
        self,
        data_dir: str | os.PathLike,
        captions_per_image: int,
        *,
        skip_bad_images: bool = False,
        allow_fewer_captions: bool = False,
        skip_untokenizable: bool = False,
        vocab_path: str | os.PathLike | None = None,
        rebuild_vocab: bool = False,
    ):
        self.data_dir = os.fspath(data_dir)
        self.captions_per_image = int(captions_per_image)
        self.skip_bad_images = skip_bad_images
        self.skipped_images = 0
        if not os.path.isdir(self.data_dir):
            raise DataError(f"{self.data_dir}: data directory not found; {_META_HINT[self.name]}")
        self._keys = {s: self._load_filenames(s) for s in _SPLITS}
        self._class_ids = {s: self._load_class_ids(s) for s in _SPLITS}
        pickle_path = os.path.join(self.data_dir, "captions.pickle")
        if self._official is not None and os.path.exists(pickle_path):
            raise DataError(
                f"{pickle_path}: the release's captions need its train|test/filenames.pickle "
                "(they are in that order), which are not in DATA_DIR; add them, or move "
                "captions.pickle away to build the vocabulary from the official captions"
            )
        if os.path.exists(pickle_path):
            train, test, self._vocab = load_captions_pickle(pickle_path)
            self._captions = {
                s: self._split_pickle_captions(pickle_path, s, caps)
                for s, caps in zip(_SPLITS, (train, test))
            }
        else:
            tokens = {
                s: [
                    self._caption_tokens(key, allow_fewer_captions, skip_untokenizable)
                    for key in self._keys[s]
                ]
                for s in _SPLITS
            }
            all_caps = [cap for s in _SPLITS for caps in tokens[s] for cap in caps]
            vocab_path = vocab_path or os.path.join(self.data_dir, "vocab.json")
            self._vocab = Vocabulary.load_or_build(vocab_path, all_caps, rebuild=rebuild_vocab)
            self._captions = {
                s: [[self._vocab.encode(c, unknown="error") for c in caps] for caps in tokens[s]]
                for s in _SPLITS
            }

    # ------------------------------------------------------------------ metadata loading

    def _meta(self, relpath: str):
        path = os.path.join(self.data_dir, relpath)
        if not os.path.exists(path):
            raise DataError(f"{path}: not found; {_META_HINT[self.name]}")
        return path, load_pickle(path)

    def _caption_tokens(self, key: str, allow_fewer: bool, skip_untokenizable: bool):
        """The tokenised captions of ``key`` (``text/<key>.txt``, or the official download's)."""
        if self._official is not None and key in self._official.tokens:
            return self._official.tokens[key]
        path = os.path.join(self.data_dir, "text", key + ".txt")
        if self._official is not None:
            path = self._official.caption_files.get(key, path)
        return read_caption_file(
            path,
            self.captions_per_image,
            allow_fewer=allow_fewer,
            skip_untokenizable=skip_untokenizable,
        )

    def _load_filenames(self, split: str) -> list[str]:
        if self._official is not None:
            return list(self._official.keys[split])
        path, keys = self._meta(os.path.join(split, "filenames.pickle"))
        if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
            raise DataError(f"{path}: expected a list of image keys (strings)")
        return list(keys)

    def _load_class_ids(self, split: str) -> np.ndarray:
        n = len(self._keys[split])
        if self._official is not None:
            ids = (self._official.class_ids or {}).get(split)
            return np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
        relpath = os.path.join(split, "class_info.pickle")
        if not os.path.exists(os.path.join(self.data_dir, relpath)):
            return np.arange(n, dtype=np.int64)  # as the original: one id per image
        path, ids = self._meta(relpath)
        try:
            ids = np.asarray(ids).astype(np.int64).reshape(-1)  # (N,)
        except (TypeError, ValueError):
            raise DataError(f"{path}: expected a list of integer class ids") from None
        if ids.shape[0] != n:
            raise DataError(f"{path}: {ids.shape[0]} class ids for {n} images in filenames.pickle")
        return ids

    def _split_pickle_captions(self, path: str, split: str, caps: list[list[int]]):
        k, n = self.captions_per_image, len(self._keys[split])
        if len(caps) != n * k:
            raise DataError(
                f"{path}: {len(caps)} {split} captions for {n} images ({len(caps) / max(n, 1):g} "
                f"per image), but captions_per_image is {k}; set captions_per_image to the value "
                "the file was built with (10 birds, 5 coco)"
            )
        vocab_size = len(self._vocab)
        for i, cap in enumerate(caps):
            if not cap or min(cap) < 1 or max(cap) >= vocab_size:
                raise DataError(
                    f"{path}: {split} caption {i} (image {self._keys[split][i // k]!r}) is empty "
                    "or "
                    f"has ids outside 1..{vocab_size - 1}: {cap}"
                )
        return [caps[i * k : (i + 1) * k] for i in range(n)]  # caption j of image i = caps[i*K+j]

    # ------------------------------------------------------------------ Source API

    def vocabulary(self) -> Vocabulary:
        """The vocabulary (the released one when ``captions.pickle`` is present)."""
        return self._vocab

    def splits(self) -> list[str]:
        """``['train', 'test']``."""
        return list(_SPLITS)

    def num_examples(self, split: str) -> int:
        """Images listed in ``split`` (skipped unreadable images still count here)."""
        return len(self._keys[self._check_split(split)])

    def image_path(self, key: str) -> str:
        """The image file of ``key``."""
        if self._official is not None and key in self._official.paths:
            return self._official.paths[key]
        return os.path.join(self.data_dir, self.image_dir, key + ".jpg")

    def image_task(self, key: str) -> ImageTask:
        """The image file of ``key`` to check and store (:func:`~.image_files.stored_image`)."""
        return ImageTask(self.image_path(key))

    def examples(self, split: str) -> Iterator[Example]:
        """Yields the split's images in ``filenames.pickle`` order (cropped for birds).

        Raises:
            DataError: an image is missing or unreadable and ``skip_bad_images`` is False.
        """
        split = self._check_split(split)
        for i, key in enumerate(self._keys[split]):
            try:
                image = load_rgb(self.image_path(key))
            except DataError as e:
                self._bad_image(e)
                continue
            image = self._crop(key, image)
            yield Example(key, image, self._captions[split][i], int(self._class_ids[split][i]))

    def stored_examples(self, split: str, workers: int | None = None) -> Iterator[Example]:
        """:meth:`examples` as records keep them: each ``image`` a :class:`StoredImage`.

        The file's bytes (for birds with the bounding-box crop to apply at load time), checked by
        decoding them in ``workers`` processes (``None``: one per CPU); same order, same errors.

        Raises:
            DataError: an image is missing or unreadable and ``skip_bad_images`` is False.
        """
        split = self._check_split(split)
        keys = self._keys[split]
        images = read_stored_images((self.image_task(k) for k in keys), workers)
        for i, (key, image) in enumerate(zip(keys, images)):
            if isinstance(image, DataError):
                self._bad_image(image)
                continue
            yield Example(key, image, self._captions[split][i], int(self._class_ids[split][i]))

    def _bad_image(self, e: DataError) -> None:
        """Raises ``e`` with the fix, or counts and logs it with ``skip_bad_images``."""
        if not self.skip_bad_images:
            raise DataError(f"{e}; {_IMAGE_HINT[self.name]}, {SKIP_HINT}") from None
        self.skipped_images += 1
        logger.warning("skipping image %d: %s", self.skipped_images, e)

    def _crop(self, key: str, image: np.ndarray) -> np.ndarray:
        return image

    def _check_split(self, split: str) -> str:
        if split not in _SPLITS:
            raise DataError(f"{self.data_dir}: unknown split {split!r}; available: {_SPLITS}")
        return split


class CUBSource(_OriginalLayoutSource):
    """CUB-200-2011 birds: images cropped to the bounding box enlarged ×0.75 (reference §12.5)."""

    name = "birds"
    image_dir = os.path.join("CUB_200_2011", "images")

    def __init__(self, data_dir: str | os.PathLike, captions_per_image: int = 10, **kwargs):
        """Loads the metadata; see the module docstring for the layout.

        Args:
            data_dir: DATA_DIR (e.g. ``data/birds``).
            captions_per_image: K (``TEXT.CAPTIONS_PER_IMAGE``, 10 for birds).
            **kwargs: ``skip_bad_images`` (skip unreadable images, counted in ``skipped_images``),
                ``allow_fewer_captions``, ``skip_untokenizable`` (see
                :func:`~attngan_jax.data.text.read_caption_file`), ``vocab_path`` (default
                ``DATA_DIR/vocab.json``) and ``rebuild_vocab``; the last four matter only without
                ``captions.pickle``.
        """
        data_dir = os.fspath(data_dir)
        release = os.path.exists(os.path.join(data_dir, "train", "filenames.pickle"))
        text_dir = None if release else official.find_cub_captions(data_dir)
        if text_dir is not None:  # CUB_200_2011 + Reed et al.'s captions, no pickles
            boxes = read_cub_bounding_boxes(os.path.join(data_dir, "CUB_200_2011"))
            self._official = official.read_cub(data_dir, text_dir, list(boxes))
        super().__init__(data_dir, captions_per_image, **kwargs)
        self._boxes = read_cub_bounding_boxes(os.path.join(self.data_dir, "CUB_200_2011"))
        for split in _SPLITS:
            missing = [k for k in self._keys[split] if k not in self._boxes]
            if missing:
                raise DataError(
                    f"{os.path.join(self.data_dir, 'CUB_200_2011', 'images.txt')}: no bounding box "
                    f"for {len(missing)} {split} image(s), e.g. {missing[0]!r}"
                )

    def _crop(self, key: str, image: np.ndarray) -> np.ndarray:
        return crop_to_bbox(image, self._boxes[key])

    def image_task(self, key: str) -> ImageTask:
        """The image file of ``key`` with its box: records crop at load time, as the original."""
        return ImageTask(self.image_path(key), bbox=self._boxes[key])


class COCOSource(_OriginalLayoutSource):
    """COCO 2014 (train2014 = train, val2014 = test); no crop, class id = image index."""

    name = "coco"
    image_dir = "images"

    def __init__(self, data_dir: str | os.PathLike, captions_per_image: int = 5, **kwargs):
        """Loads the metadata; arguments as :class:`CUBSource` (K = 5 for coco).

        With the release's ``train/filenames.pickle`` its layout is read exactly as before;
        without it, the official COCO 2014 download (:mod:`~attngan_jax.data.official`).
        """
        data_dir = os.fspath(data_dir)
        release = os.path.exists(os.path.join(data_dir, "train", "filenames.pickle"))
        if not release and official.has_coco(data_dir):
            self._official = official.read_coco(
                data_dir, captions_per_image, kwargs.get("allow_fewer_captions", False)
            )
        super().__init__(data_dir, captions_per_image, **kwargs)

    def image_path(self, key: str) -> str:
        """``images/<key>.jpg`` (release), else ``train2014/`` or ``val2014/`` (official)."""
        path = super().image_path(key)
        if self._official is None and not os.path.exists(path):
            for folder in official.COCO_FOLDERS.values():  # the release's keys, official folders
                alt = os.path.join(self.data_dir, folder, key + ".jpg")
                if os.path.exists(alt):
                    return alt
        return path
