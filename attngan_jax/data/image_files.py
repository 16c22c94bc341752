"""Image files: reading them as the original does, storing them as they are, checking them in parallel.

The original reads every image with ``Image.open(path).convert('RGB')`` (and crops birds to their
bounding box afterwards, reference §12.5). A prepared record therefore keeps the **file's own
bytes** and, for birds, the crop box; the loader decodes them with :func:`decode_stored`, which
gives exactly the pixels of :func:`load_rgb` on the file (then the crop), i.e. of the original's
``get_imgs`` on the same file, crop and flip. Nothing is re-encoded except files whose
``convert('RGB')`` is not what :func:`load_rgb` gives, or whose format the loader should not
depend on (:func:`stored_image`): those are stored as a lossless PNG of :func:`load_rgb`'s pixels.

Preparation decodes each file once to check it (a truncated or corrupt file fails there with the
message it always gave, not in the middle of training); :func:`read_stored_images` runs those
checks in worker processes, in order, so one writer can store the results as they come.
"""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import os
import sys
import types
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps

from attngan_jax.data.text import DataError

# What the loader decodes as stored: formats every Pillow build reads, in modes whose
# ``convert('RGB')`` is exactly :func:`load_rgb`'s conversion.
_KEPT_FORMATS = ("JPEG", "PNG")
_KEPT_MODES = ("RGB", "L")
_EXIF_ORIENTATION = 0x0112


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
    rgb, _, _ = _decode(os.fspath(path), exif_transpose, pixels=True)
    return np.asarray(rgb, dtype=np.uint8)


def _decode(
    path: str, exif_transpose: bool, pixels: bool
) -> tuple[Image.Image | None, tuple[int, int], bool]:
    """Decodes ``path`` (a full decode: truncated files fail here, not later).

    Returns:
        ``(RGB image, (width, height), as_stored)``: ``as_stored`` says whether the file decodes
        to that image as it is (:func:`stored_image` keeps it then); the image is None when
        ``pixels`` is False and the file is kept as it is (no conversion needed).
    """
    try:
        with Image.open(path) as img:
            img.load()
            as_stored = img.format in _KEPT_FORMATS and img.mode in _KEPT_MODES
            if exif_transpose and as_stored and img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                as_stored = False
            if as_stored and not pixels:
                rgb, size = None, img.size
            else:
                if exif_transpose:
                    img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
                size = rgb.size
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None
    if size[0] < 1 or size[1] < 1:
        raise DataError(f"{path}: the image has no pixels ({size[0]}x{size[1]})")
    return rgb, size, as_stored


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


@dataclasses.dataclass(frozen=True)
class StoredImage:
    """What a record keeps of an image file.

    Attributes:
        data: the file's bytes, or (re-encoded files) a PNG of :func:`load_rgb`'s pixels.
        crop: ``(left, top, right, bottom)`` box cut out of the decoded image at load time; the
            whole image, ``(0, 0, W, H)``, where nothing is cut.
        reencoded: whether ``data`` is a PNG written here rather than the file.
    """

    data: bytes
    crop: tuple[int, int, int, int]
    reencoded: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the image the loader gets (after the crop)."""
        return self.crop[2] - self.crop[0], self.crop[3] - self.crop[1]


@dataclasses.dataclass(frozen=True)
class ImageTask:
    """An image file to check and store: ``path``, the original's bbox (birds) or None, EXIF."""

    path: str
    bbox: tuple[int, int, int, int] | None = None
    exif_transpose: bool = False


def stored_image(task: ImageTask) -> StoredImage:
    """Reads and checks ``task.path`` (full decode) and returns what a record keeps of it.

    JPEG and PNG files in RGB or grayscale (``L``) mode are kept byte for byte; anything else
    (CMYK, palette, transparency, 16 bits, other formats, an EXIF rotation applied for custom
    folders) is stored as a lossless PNG of :func:`load_rgb`'s pixels.

    Raises:
        DataError: as :func:`load_rgb`.
    """
    rgb, (width, height), as_stored = _decode(task.path, task.exif_transpose, pixels=False)
    box = (0, 0, width, height)
    if task.bbox is not None:
        box = bbox_crop_box(task.bbox, width, height)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise DataError(
                f"{task.path}: the bounding box {list(task.bbox)} lies outside the "
                f"{width}x{height} image; restore bounding_boxes.txt from CUB_200_2011.tgz"
            )
    if as_stored:
        try:
            with open(task.path, "rb") as f:
                return StoredImage(f.read(), box)
        except OSError as e:
            raise DataError(f"{task.path}: unreadable image ({e})") from None
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    return StoredImage(buf.getvalue(), box, reencoded=True)


def decode_stored(data: bytes, crop: Sequence[int]) -> Image.Image:
    """The loader's image: ``Image.open(data).convert('RGB')`` cut to ``crop`` (as the original).

    Args:
        data: :attr:`StoredImage.data`.
        crop: :attr:`StoredImage.crop` ``(left, top, right, bottom)``.

    Returns:
        PIL RGB image of size ``(right - left, bottom - top)``.
    """
    img = Image.open(io.BytesIO(data))
    if img.mode != "RGB":  # convert('RGB') of an RGB image is a copy of the same pixels
        img = img.convert("RGB")
    box = tuple(int(v) for v in crop)
    if box != (0, 0, *img.size):
        img = img.crop(box)
    return img


def _try_stored(task: ImageTask) -> StoredImage | DataError:
    try:
        return stored_image(task)
    except DataError as e:
        return e


def default_workers() -> int:
    """Worker processes for preparation: the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_stored_images(
    tasks: Iterable[ImageTask], workers: int | None = None, *, chunksize: int = 8
) -> Iterator[StoredImage | DataError]:
    """:func:`stored_image` of every task, in order, computed by ``workers`` processes.

    A file that fails gives its :class:`DataError` in its place (the caller decides to skip or
    raise), so one bad image stops nothing by itself. Workers are started with ``spawn`` (safe in a
    process that runs JAX threads) and ended when the iterator is exhausted or closed; a killed
    parent leaves none behind (they exit when their task pipe closes).

    Args:
        tasks: the image files.
        workers: processes; ``None``: :func:`default_workers`; 0 or 1: in this process.
        chunksize: tasks sent to a worker at a time.

    Yields:
        :class:`StoredImage` or :class:`DataError`, one per task, in task order.
    """
    workers = default_workers() if workers is None else workers
    if workers <= 1:
        for t in tasks:
            yield _try_stored(t)
        return
    ctx = multiprocessing.get_context("spawn")
    # The workers need nothing from the caller's script: hiding it while they start keeps spawn
    # from running it again in each of them (a script without an `if __name__ == "__main__":`
    # guard would otherwise start workers of its own, without end).
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        pool = ctx.Pool(workers)
    finally:
        sys.modules["__main__"] = main
    with pool:
        yield from pool.imap(_try_stored, tasks, chunksize=chunksize)
