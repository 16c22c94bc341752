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
from PIL import Image, ImageOps

from attngan_jax.data.base import Example
from attngan_jax.data.safe_pickle import load_pickle
from attngan_jax.data.text import DataError, read_caption_file
from attngan_jax.data.vocab import Vocabulary, load_captions_pickle

logger = logging.getLogger(__name__)

_SPLITS = ("train", "test")
_META_HINT = {
    "birds": "download the preprocessed birds metadata (birds.zip, linked in the AttnGAN README) "
    "and unzip it into DATA_DIR",
    "coco": "download the preprocessed coco metadata (coco.zip, linked in the AttnGAN README) "
    "and unzip it into DATA_DIR",
}
SKIP_HINT = (
    "or skip unreadable images (skip_bad_images=True; from the command line: python -m "
    "attngan_jax.data.prepare ... --source_kwargs='{\"skip_bad_images\": true}')"
)
_IMAGE_HINT = {
    "birds": "download CUB_200_2011.tgz and extract it into DATA_DIR",
    "coco": "put the COCO 2014 train and val images (flat) into DATA_DIR/images",
}


def load_rgb(path: str | os.PathLike, exif_transpose: bool = False) -> np.ndarray:
    """Reads an image as RGB, as the original's ``Image.open(path).convert('RGB')`` where it can.

    Unusual images are converted rather than refused: grayscale, palette and CMYK images become
    RGB; transparent pixels (RGBA, LA, palette transparency) are composited onto white (plain
    ``convert('RGB')`` would show whatever colour the transparent pixels store, often black);
    16-bit images are scaled to 8 bits (``convert`` would clip them to white).

    Args:
        path: the image file.
        exif_transpose: apply the EXIF orientation (phone photos); off for CUB/COCO, whose
            bounding boxes are in stored-pixel coordinates.

    Returns:
        uint8 array (H, W, 3).

    Raises:
        DataError: the file is missing or cannot be decoded (message names the file).
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files fail here, not later
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None
    if rgb.width < 1 or rgb.height < 1:
        raise DataError(f"{path}: the image has no pixels ({rgb.width}x{rgb.height})")
    return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB (see :func:`load_rgb`)."""
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit grayscale
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if a.size and a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def bbox_crop_box(bbox: Sequence[int], width: int, height: int) -> tuple[int, int, int, int]:
    """The original's enlarged bounding-box crop (reference §12.5 step 2).

    Args:
        bbox: ``[x, y, w, h]`` integers (top-left corner, size).
        width: image width W.
        height: image height H.

    Returns:
        ``(left, top, right, bottom)`` =
        ``[max(0, cx-r), max(0, cy-r), min(W, cx+r), min(H, cy+r)]`` with
        ``r = int(max(w, h) * 0.75)``, ``cx = int((2x + w) / 2)``, ``cy = int((2y + h) / 2)``
        (true division, then truncation).
    """
    x, y, w, h = (int(v) for v in bbox)
    r = int(max(w, h) * 0.75)
    cx = int((2 * x + w) / 2)
    cy = int((2 * y + h) / 2)
    return max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)


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
        if os.path.exists(pickle_path):
            train, test, self._vocab = load_captions_pickle(pickle_path)
            self._captions = {
                s: self._split_pickle_captions(pickle_path, s, caps)
                for s, caps in zip(_SPLITS, (train, test))
            }
        else:
            tokens = {
                s: [
                    read_caption_file(
                        os.path.join(self.data_dir, "text", key + ".txt"),
                        self.captions_per_image,
                        allow_fewer=allow_fewer_captions,
                        skip_untokenizable=skip_untokenizable,
                    )
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

    def _load_filenames(self, split: str) -> list[str]:
        path, keys = self._meta(os.path.join(split, "filenames.pickle"))
        if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
            raise DataError(f"{path}: expected a list of image keys (strings)")
        return list(keys)

    def _load_class_ids(self, split: str) -> np.ndarray:
        n = len(self._keys[split])
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
        return os.path.join(self.data_dir, self.image_dir, key + ".jpg")

    def examples(self, split: str) -> Iterator[Example]:
        """Yields the split's images in ``filenames.pickle`` order (cropped for birds).

        Raises:
            DataError: an image is missing or unreadable and ``skip_bad_images`` is False.
        """
        split = self._check_split(split)
        for i, key in enumerate(self._keys[split]):
            path = self.image_path(key)
            try:
                image = load_rgb(path)
            except DataError as e:
                if not self.skip_bad_images:
                    raise DataError(f"{e}; {_IMAGE_HINT[self.name]}, {SKIP_HINT}") from None
                self.skipped_images += 1
                logger.warning("skipping image %d: %s", self.skipped_images, e)
                continue
            image = self._crop(key, image)
            yield Example(key, image, self._captions[split][i], int(self._class_ids[split][i]))

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


class COCOSource(_OriginalLayoutSource):
    """COCO 2014 (train2014 = train, val2014 = test); no crop, class id = image index."""

    name = "coco"
    image_dir = "images"

    def __init__(self, data_dir: str | os.PathLike, captions_per_image: int = 5, **kwargs):
        """Loads the metadata; arguments as :class:`CUBSource` (K = 5 for coco)."""
        super().__init__(data_dir, captions_per_image, **kwargs)
