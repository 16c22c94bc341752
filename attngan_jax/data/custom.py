"""A folder of your own captioned images.

Layout (any depth of sub-folders)::

    ROOT/<path>/<name>.jpg   (.jpeg .png .webp .bmp, any case)
    ROOT/<path>/<name>.txt   its captions, one per line (UTF-8, any case of ``.txt``; empty lines,
                             a byte-order mark and Windows line ends are fine)
    ROOT/classes.txt         optional class labels (see below)
    ROOT/vocab.json          written on the first run (atomically) and re-used afterwards

An image's key is its path relative to ROOT without the extension, with ``/`` separators
(``'cats/tabby_01'``). Class labels (used only by the DAMSM class masking) come from, in order:

* ``class_labels_file`` (default ``ROOT/classes.txt`` when it exists): CSV lines
  ``relative/path,label`` where the path is the image path relative to ROOT with or without the
  extension; blank lines, ``#`` comments and a header line ``path,label`` are ignored. Labels that
  are all integers are used as the class ids; otherwise the distinct labels, sorted, get ids 0..C-1.
  Every image needs a label.
* ``classes_from_subfolders=True``: the image's top-level sub-folder name is its label.
* neither: a unique id per image, so the DAMSM losses mask nothing.

Images are converted, not refused, when merely unusual (grayscale, palette, CMYK, transparency,
16 bits, EXIF rotation; see :func:`~attngan_jax.data.original.load_rgb`); their headers are read
when the folder is scanned, so a file that is no image fails before anything is written. A caption
file without an image is reported in a warning (it is probably misnamed) and otherwise ignored.

Splits: ``split_file`` (CSV lines ``relative/path,train|test``, every image listed) or a
deterministic hash split: an image is in ``test`` when the first 8 bytes of SHA-256(key), as a
fraction of 2**64, fall below ``test_fraction``; adding images never moves existing ones.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator

from PIL import Image

from attngan_jax.data.base import Example
from attngan_jax.data.image_files import ImageTask, load_rgb, read_stored_images
from attngan_jax.data.original import SKIP_HINT
from attngan_jax.data.text import DataError, read_caption_file
from attngan_jax.data.vocab import Vocabulary

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
_SPLITS = ("train", "test")


def hash_fraction(key: str) -> float:
    """A deterministic number in [0, 1) from ``key`` (first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def _read_csv_map(path: str, keys: set[str], what: str) -> dict[str, str]:
    """Reads ``relative/path,value`` lines into key -> value (paths with or without extension)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        raise DataError(f"{path}: {what} file not found") from None
    out: dict[str, str] = {}
    for line_no, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "," not in line:
            raise DataError(f"{path}: line {line_no}: expected 'relative/path,{what}': {line!r}")
        rel, value = (s.strip() for s in line.rsplit(",", 1))
        if line_no == 1 and rel.lower() == "path":
            continue  # header
        key = rel.replace(os.sep, "/")
        if key not in keys and os.path.splitext(key)[1].lower() in IMAGE_EXTENSIONS:
            key = os.path.splitext(key)[0]
        if key not in keys:
            raise DataError(f"{path}: line {line_no}: no image {rel!r} under the folder")
        if not value:
            raise DataError(f"{path}: line {line_no}: empty {what} for {rel!r}")
        out[key] = value
    missing = sorted(keys - set(out))
    if missing:
        raise DataError(f"{path}: no {what} for {len(missing)} image(s), e.g. {missing[:5]}")
    return out


def _check_header(path: str) -> None:
    """Raises DataError unless PIL recognises ``path`` as an image (reads the header only)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({e}); fix or remove it, {SKIP_HINT}") from None
    if width < 1 or height < 1:
        raise DataError(f"{path}: the image has no pixels ({width}x{height}); remove it")


class CustomFolderSource:
    """Images with same-named ``.txt`` caption files; see the module docstring for the layout."""

    name = "custom"

    def __init__(
        self,
        root: str | os.PathLike,
        captions_per_image: int | None = None,
        class_labels_file: str | os.PathLike | None = None,
        *,
        classes_from_subfolders: bool = False,
        test_fraction: float = 0.1,
        split_file: str | os.PathLike | None = None,
        vocab_path: str | os.PathLike | None = None,
        rebuild_vocab: bool = False,
        skip_bad_images: bool = False,
        skip_untokenizable: bool = False,
    ):
        """Scans the folder, reads and tokenises every caption file, loads or builds the vocabulary.

        Args:
            root: the folder.
            captions_per_image: K captions kept per image (the first K of each file; a file with
                fewer is an error). ``None``: K = the smallest number of captions over all files.
            class_labels_file: CSV of class labels (default ``root/classes.txt`` if present).
            classes_from_subfolders: use the top-level sub-folder name as the class label.
            test_fraction: expected fraction of images in ``test`` (hash split; ignored with
                ``split_file``). 0 gives a single ``train`` split.
            split_file: CSV ``relative/path,train|test`` listing every image.
            vocab_path: vocabulary file (default ``root/vocab.json``).
            rebuild_vocab: rebuild and overwrite the vocabulary even if the saved one exists.
            skip_bad_images: skip unreadable images (counted in ``skipped_images``) instead of
                raising.
            skip_untokenizable: skip caption lines without word tokens (counted warning).
        """
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise DataError(f"{self.root}: image folder not found")
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
        self.skip_bad_images = skip_bad_images
        self.skipped_images = 0
        self._paths = self._scan()  # key -> image path
        keys = sorted(self._paths)

        if not skip_bad_images:
            for k in keys:
                _check_header(self._paths[k])
        tokens = {}
        for k in keys:
            txt = self._caption_files.get(k)
            if txt is None:
                raise DataError(
                    f"{os.path.splitext(self._paths[k])[0]}.txt: caption file of image "
                    f"{self._paths[k]} not found; write one caption per line into it, or remove "
                    "the image"
                )
            tokens[k] = read_caption_file(
                txt, captions_per_image, skip_untokenizable=skip_untokenizable
            )
        if captions_per_image is None:
            captions_per_image = min(len(c) for c in tokens.values())
            tokens = {k: c[:captions_per_image] for k, c in tokens.items()}
        self.captions_per_image = captions_per_image

        all_caps = [cap for k in keys for cap in tokens[k]]
        vocab_path = vocab_path or os.path.join(self.root, "vocab.json")
        self._vocab = Vocabulary.load_or_build(vocab_path, all_caps, rebuild=rebuild_vocab)
        self._captions = {k: [self._vocab.encode(c, "error") for c in tokens[k]] for k in keys}
        self._class_ids = self._classes(keys, class_labels_file, classes_from_subfolders)

        if split_file is not None:
            split_of = _read_csv_map(os.fspath(split_file), set(keys), "split")
            bad = {v for v in split_of.values() if v not in _SPLITS}
            if bad:
                raise DataError(
                    f"{split_file}: unknown split name(s) {sorted(bad)}; use train/test"
                )
        else:
            split_of = {k: "test" if hash_fraction(k) < test_fraction else "train" for k in keys}
        self._keys = {s: [k for k in keys if split_of[k] == s] for s in _SPLITS}

    def _scan(self) -> dict[str, str]:
        """Finds the images (key -> path) and their caption files (``self._caption_files``)."""
        paths: dict[str, str] = {}
        texts: dict[str, str] = {}  # key -> caption file, ".txt" in any case
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                stem, ext = os.path.splitext(fn)
                if fn.startswith("."):
                    continue
                if ext.lower() == ".txt":
                    key = os.path.relpath(os.path.join(dirpath, stem), self.root)
                    texts.setdefault(key.replace(os.sep, "/"), os.path.join(dirpath, fn))
                if ext.lower() not in IMAGE_EXTENSIONS:
                    continue
                path = os.path.join(dirpath, fn)
                key = os.path.relpath(os.path.join(dirpath, stem), self.root).replace(os.sep, "/")
                if key in paths:
                    raise DataError(
                        f"{path}: same name as {paths[key]}; both would use the caption file "
                        f"{os.path.join(dirpath, stem)}.txt - rename one"
                    )
                paths[key] = path
        if not paths:
            raise DataError(
                f"{self.root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found; put each image "
                "with a same-named .txt caption file into the folder (any depth of sub-folders)"
            )
        self._caption_files = {k: t for k, t in texts.items() if k in paths}
        orphans = sorted(k for k in texts if k not in paths and k != "classes")
        if orphans:
            logger.warning(
                "%s: %d caption file(s) without a same-named image, ignored (misnamed?): %s",
                self.root,
                len(orphans),
                ", ".join(texts[k] for k in orphans[:5]) + (" ..." if len(orphans) > 5 else ""),
            )
        return paths

    def _classes(self, keys, labels_file, from_subfolders) -> dict[str, int]:
        default_file = os.path.join(self.root, "classes.txt")
        if labels_file is None and not from_subfolders and os.path.exists(default_file):
            labels_file = default_file
        if labels_file is not None and from_subfolders:
            raise ValueError("give either class_labels_file or classes_from_subfolders, not both")
        if from_subfolders:
            flat = [k for k in keys if "/" not in k]
            if flat:
                raise DataError(
                    f"{self._paths[flat[0]]}: not in a sub-folder, but classes_from_subfolders=True"
                )
            labels = {k: k.split("/", 1)[0] for k in keys}
        elif labels_file is not None:
            labels = _read_csv_map(os.fspath(labels_file), set(keys), "label")
        else:
            return {k: i for i, k in enumerate(keys)}  # unique id per image: nothing is masked
        try:
            return {k: int(v) for k, v in labels.items()}
        except ValueError:
            index = {v: i for i, v in enumerate(sorted(set(labels.values())))}
            return {k: index[v] for k, v in labels.items()}

    # ------------------------------------------------------------------ Source API

    def vocabulary(self) -> Vocabulary:
        """The folder's vocabulary (``vocab.json``)."""
        return self._vocab

    def splits(self) -> list[str]:
        """The non-empty splits among ``['train', 'test']``."""
        return [s for s in _SPLITS if self._keys[s]]

    def num_examples(self, split: str) -> int:
        """Images in ``split`` (skipped unreadable images still count here)."""
        return len(self._keys[self._check_split(split)])

    def examples(self, split: str) -> Iterator[Example]:
        """Yields the split's images sorted by key.

        Raises:
            DataError: an image is unreadable and ``skip_bad_images`` is False.
        """
        for key in self._keys[self._check_split(split)]:
            try:
                image = load_rgb(self._paths[key], exif_transpose=True)
            except DataError as e:
                self._bad_image(e)
                continue
            yield Example(key, image, self._captions[key], self._class_ids[key])

    def stored_examples(self, split: str, workers: int | None = None) -> Iterator[Example]:
        """:meth:`examples` as records keep them (see ``CUBSource.stored_examples``).

        Files are kept as they are, except those :func:`~.image_files.stored_image` re-encodes
        (e.g. a photo with an EXIF rotation is stored upright as a PNG).
        """
        keys = self._keys[self._check_split(split)]
        tasks = (ImageTask(self._paths[k], exif_transpose=True) for k in keys)
        for key, image in zip(keys, read_stored_images(tasks, workers)):
            if isinstance(image, DataError):
                self._bad_image(image)
                continue
            yield Example(key, image, self._captions[key], self._class_ids[key])

    def _bad_image(self, e: DataError) -> None:
        if not self.skip_bad_images:
            raise DataError(f"{e}; fix or remove it, {SKIP_HINT}") from None
        self.skipped_images += 1
        logger.warning("skipping image %d: %s", self.skipped_images, e)

    def _check_split(self, split: str) -> str:
        if split not in _SPLITS:
            raise DataError(f"{self.root}: unknown split {split!r}; available: {self.splits()}")
        return split
