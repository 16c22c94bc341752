"""TFDS builders that serialise a :class:`~attngan_jax.data.base.Source` to ArrayRecord.

TFDS 4.9.10 generates ``file_format="array_record"`` datasets without TensorFlow as long as no
feature needs a TF op at encode time; images are stored as plain bytes (a ``Tensor`` of strings),
which TFDS writes untouched and the loader decodes with PIL.

On-disk result (``<data_dir>/attngan_<dataset>/2.0.0/``)::

    attngan_<dataset>-<split>.array_record-0000i-of-0000n  serialized tf.train.Example records
    index-<split>.npz                  every record's captions, crop box and class (no image bytes)
    dataset_info.json, features.json   TFDS metadata (split sizes, feature spec)
    metadata.json                      {"dataset", "n_words", "positional_captions", "format"}
    vocab.json                         Vocabulary.save(...) of the source

Features of one record (one image with all of its captions):

* ``image``: the image file's bytes as they are on disk (JPEG for CUB and COCO), or, for what must
  be re-encoded (:func:`~attngan_jax.data.image_files.stored_image`) and for images a source draws
  (shapes), a lossless PNG (``image_format='jpeg'``: JPEG quality 95 for drawn images).
* ``crop``: (4,) int32 ``(left, top, right, bottom)`` cut out of the decoded image at load time
  (the CUB bounding-box crop of the original; the whole image elsewhere).
* ``tokens``: (sum of caption lengths,) int32, all captions concatenated in file order.
* ``cap_lens``: (K,) int32, the length of each caption; caption j is
  ``tokens[cumsum[j-1]:cumsum[j]]``.
* ``class_id``: int32; ``key``: the source's key string.

``index-<split>.npz`` repeats everything but the image for all records of the split (``tokens``,
``cap_lens``, ``num_caps`` (N,), ``crop`` (N, 4), ``class_id`` (N,), ``key`` (N,) bytes,
``image_bytes`` (N,)): the loader draws every example's randomness from it on every host and reads
the records (image bytes) of its own rows only.

Records keep the source order (``disable_shuffling=True``), so a record's index is its position in
the split. Image files are checked (decoded) in worker processes and written in order by this
process. TFDS writes everything into ``attngan_<dataset>/incomplete.*`` and renames it into place
only after the last split and ``dataset_info.json`` are written; an exception removes the temporary
directory, and a killed process leaves only an ``incomplete.*`` directory, which neither TFDS nor
:func:`is_prepared` takes for a dataset (:func:`prepare` removes it on the next run).

Version 1.0.0 (before attngan-jax stored the files themselves) kept a PNG of every decoded, cropped
image: 5x the disk and a slower decode. Its directories are not read any more:
:func:`check_format` tells the user to prepare again (``prepare`` writes 2.0.0 beside it).
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import shutil
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from attngan_jax.data.base import Source
from attngan_jax.data.image_files import StoredImage
from attngan_jax.errors import InputError
from attngan_jax.runtime import faults

VERSION = "2.0.0"
FORMAT = 2  # metadata.json "format": records keep the files' bytes + crop box, index-<split>.npz
VOCAB_FILENAME = "vocab.json"
INDEX_FILENAME = "index-{split}.npz"
# Datasets whose captions describe left/right positions: flips and crops would contradict them.
POSITIONAL_DATASETS = ("shapes",)


def encode_image(image: np.ndarray, image_format: str = "png") -> bytes:
    """Encodes an RGB image with PIL.

    Args:
        image: (H, W, 3) uint8.
        image_format: ``'png'`` (lossless) or ``'jpeg'`` (quality 95).

    Returns:
        The encoded bytes.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    buf = io.BytesIO()
    if image_format == "png":
        Image.fromarray(image).save(buf, format="PNG")
    elif image_format == "jpeg":
        Image.fromarray(image).save(buf, format="JPEG", quality=95)
    else:
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    return buf.getvalue()


def features() -> tfds.features.FeaturesDict:
    """The record feature spec (see the module docstring)."""
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),  # bytes, stored as given
            "crop": tfds.features.Tensor(shape=(4,), dtype=np.int32),
            "tokens": tfds.features.Tensor(shape=(None,), dtype=np.int32),
            "cap_lens": tfds.features.Tensor(shape=(None,), dtype=np.int32),
            "class_id": tfds.features.Scalar(dtype=np.int32),
            "key": tfds.features.Text(),
        }
    )


class AttnganBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Generic builder: writes the splits of the source returned by ``source_factory``.

    Use :func:`builder_class` to get a subclass named ``attngan_<dataset>`` (TFDS takes the dataset
    directory name from the class).
    """

    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES = {
        "1.0.0": "Initial release: PNG of every decoded (cropped) image.",
        "2.0.0": "The image files' own bytes + crop box; index-<split>.npz of the metadata.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point --manual_dir at the original dataset tree (see attngan_jax/data/original.py and "
        "attngan_jax/data/custom.py for the expected layouts)."
    )

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> None:
        """No code-side files (checksums, README).

        Returning None also keeps TFDS from touching ``importlib_resources``, which TFDS 4.9.10
        imports lazily but does not install.
        """
        return None

    def __init__(
        self,
        *,
        source_factory: Callable[[], Source] | None = None,
        image_format: str = "png",
        progress: bool = False,
        workers: int | None = None,
        **kwargs: Any,
    ):
        """Creates the builder.

        Args:
            source_factory: ``() -> Source``; only needed to generate (not to read).
            image_format: ``'png'`` or ``'jpeg'`` encoding of images a source draws (arrays);
                image files are stored as they are.
            progress: show a tqdm bar (rate, ETA) with the split size as total while generating.
            workers: processes that check the image files (``None``: one per CPU; 0: none).
            **kwargs: forwarded to ``tfds.core.GeneratorBasedBuilder`` (``data_dir``, ...).
        """
        self._source_factory = source_factory
        self._image_format = image_format
        self._progress = progress
        self._workers = workers
        self._source: Source | None = None
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        dataset = self.name.removeprefix("attngan_")
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"AttnGAN '{dataset}' images with all their captions as word ids.",
            features=features(),
            disable_shuffling=True,  # record index == position in the source's split
            metadata=tfds.core.MetadataDict(
                dataset=dataset, positional_captions=dataset in POSITIONAL_DATASETS, format=FORMAT
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        if self._source_factory is None:
            raise ValueError(f"{self.name}: a source_factory is needed to generate the dataset")
        del dl_manager  # nothing is downloaded; the factory knows the manual directory
        self._source = self._source_factory()
        vocab = self._source.vocabulary()
        # self.data_dir is the temporary `incomplete` directory here: the vocabulary is renamed into
        # place together with the records.
        vocab.save(os.path.join(self.data_dir, VOCAB_FILENAME))
        self.info.metadata["n_words"] = len(vocab.ixtoword)
        return {split: self._generate_examples(split) for split in self._source.splits()}

    def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
        stored = getattr(self._source, "stored_examples", None)
        if stored is not None:  # image files: checked in worker processes, stored as they are
            examples = stored(split, workers=self._workers)
        else:  # drawn images (arrays)
            examples = self._source.examples(split)
        if self._progress:
            from tqdm import tqdm

            examples = tqdm(
                examples,
                total=self._source.num_examples(split),
                desc=f"{self.name}/{split}",
                unit="img",
                smoothing=0.05,
            )
        index = _IndexWriter()
        for i, ex in enumerate(examples):
            faults.point(f"prepare:{split}:{i}")
            lens = [len(c) for c in ex.captions]
            if not lens or min(lens) == 0:
                raise ValueError(f"{ex.key}: every image needs at least one non-empty caption")
            tokens = np.concatenate([np.asarray(c, np.int64) for c in ex.captions])
            if tokens.min() < 0 or tokens.max() > np.iinfo(np.int32).max:
                raise ValueError(f"{ex.key}: word ids out of int32 range")
            if isinstance(ex.image, StoredImage):
                data, crop = ex.image.data, ex.image.crop
            else:
                image = np.asarray(ex.image)
                data = encode_image(image, self._image_format)
                crop = (0, 0, image.shape[1], image.shape[0])
            record = {
                "image": data,
                "crop": np.asarray(crop, np.int32),
                "tokens": tokens.astype(np.int32),
                "cap_lens": np.asarray(lens, np.int32),
                "class_id": np.int32(ex.class_id),
                "key": ex.key,
            }
            index.add(record)
            yield ex.key, record
        # self.data_dir is the `incomplete` directory: renamed into place with the records
        index.save(os.path.join(self.data_dir, INDEX_FILENAME.format(split=split)))


class _IndexWriter:
    """Collects ``index-<split>.npz`` (see the module docstring)."""

    def __init__(self):
        self.tokens, self.cap_lens, self.num_caps = [], [], []
        self.crop, self.class_id, self.key, self.image_bytes = [], [], [], []

    def add(self, record: dict[str, Any]) -> None:
        self.tokens.append(record["tokens"])
        self.cap_lens.append(record["cap_lens"])
        self.num_caps.append(len(record["cap_lens"]))
        self.crop.append(record["crop"])
        self.class_id.append(record["class_id"])
        self.key.append(record["key"].encode("utf-8"))
        self.image_bytes.append(len(record["image"]))

    def save(self, path: str) -> None:
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros((0,), np.int32)  # noqa: E731
        with open(path, "wb") as f:
            np.savez(
                f,
                tokens=cat(self.tokens).astype(np.int32),
                cap_lens=cat(self.cap_lens).astype(np.int32),
                num_caps=np.asarray(self.num_caps, np.int32),
                crop=np.asarray(self.crop, np.int32).reshape(-1, 4),
                class_id=np.asarray(self.class_id, np.int32),
                key=np.asarray(self.key, dtype=np.bytes_),
                image_bytes=np.asarray(self.image_bytes, np.int64),
            )


def builder_class(dataset: str) -> type[AttnganBuilder]:
    """A builder class whose TFDS name (and directory) is ``attngan_<dataset>``."""
    cls_name = "Attngan" + "".join(part.capitalize() for part in dataset.split("_"))
    return types.new_class(
        cls_name,
        (AttnganBuilder,),
        {"skip_registration": True},
        lambda ns: ns.update({"name": f"attngan_{dataset}", "__module__": __name__}),
    )


def _default_factory(
    dataset: str, manual_dir: str | None, **source_kwargs: Any
) -> Callable[[], Source]:
    """``() -> Source`` for the four known datasets."""

    def need() -> str:
        if not manual_dir:
            raise ValueError(f"dataset {dataset!r} needs --manual_dir (the original data tree)")
        return manual_dir

    def factory() -> Source:
        if dataset == "birds":
            from attngan_jax.data.original import CUBSource

            return CUBSource(need(), **source_kwargs)
        if dataset == "coco":
            from attngan_jax.data.original import COCOSource

            return COCOSource(need(), **source_kwargs)
        if dataset == "custom":
            from attngan_jax.data.custom import CustomFolderSource

            return CustomFolderSource(need(), **source_kwargs)
        if dataset == "shapes":
            from attngan_jax.data.shapes import ShapesSource

            return ShapesSource(**source_kwargs)
        raise ValueError(f"unknown dataset {dataset!r} (birds, coco, custom, shapes)")

    return factory


DATASETS = ("birds", "coco", "custom", "shapes")


def dataset_dir(data_dir: str, dataset: str) -> str:
    """Where :func:`prepare` puts ``dataset``: ``<data_dir>/attngan_<dataset>/<VERSION>``."""
    return os.path.join(data_dir, f"attngan_{dataset}", VERSION)


def older_versions(data_dir: str, dataset: str) -> list[str]:
    """Complete datasets of ``dataset`` in ``data_dir`` prepared in an older format (to say so)."""
    root = os.path.join(data_dir, f"attngan_{dataset}")
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    return [
        os.path.join(root, n)
        for n in names
        if n != VERSION and not n.startswith("incomplete.") and is_prepared(os.path.join(root, n))
    ]


def is_prepared(path: str) -> bool:
    """Whether ``path`` is a completely generated dataset directory."""
    return os.path.isfile(os.path.join(path, "dataset_info.json")) and os.path.isfile(
        os.path.join(path, VOCAB_FILENAME)
    )


def check_format(path: str) -> None:
    """Raises :class:`OldFormatError` if ``path`` was prepared by an older attngan-jax.

    Args:
        path: a prepared dataset directory (:func:`is_prepared`).
    """
    try:
        with open(os.path.join(path, "metadata.json")) as f:
            fmt = json.load(f).get("format", 1)
    except (OSError, ValueError):
        fmt = 1
    if fmt != FORMAT:
        dataset = os.path.basename(os.path.dirname(os.path.normpath(path))).removeprefix("attngan_")
        raise OldFormatError(
            f"{path}: prepared by an older attngan-jax (record format {fmt}; this version reads "
            f"format {FORMAT}, which keeps the image files as they are: 1/5 of the disk, faster "
            "to load). Prepare the dataset again: python -m attngan_jax.data.prepare "
            f"--dataset={dataset or 'NAME'} --manual_dir=... --data_dir=DATA_DIR (it writes "
            f"DATA_DIR/attngan_<dataset>/{VERSION} beside the old one, which you can delete); "
            "train.py does it by itself"
        )


class OldFormatError(InputError):
    """A prepared dataset in a record format this version no longer reads."""


def prepare(
    dataset: str,
    data_dir: str,
    manual_dir: str | None = None,
    *,
    source: Source | None = None,
    image_format: str = "png",
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
    **source_kwargs: Any,
) -> str:
    """Generates (or reuses) the ArrayRecord dataset of ``dataset``.

    Args:
        dataset: ``birds``, ``coco``, ``custom`` or ``shapes`` (any name when ``source`` is given).
        data_dir: root directory for prepared datasets.
        manual_dir: the original files (CUB/COCO tree, custom caption folder); unused for shapes.
        source: a ready :class:`Source` to serialise instead of the default one for ``dataset``.
        image_format: ``'png'`` (lossless, default) or ``'jpeg'`` for images a source draws
            (shapes); image files are stored as they are.
        overwrite: regenerate even if a complete dataset exists.
        progress: tqdm bar per split (rate and ETA).
        workers: processes that decode and check the image files while this one writes
            (``None``: one per CPU this process may use; 0: all in this process).
        **source_kwargs: forwarded to the source constructor.

    Returns:
        The dataset directory (``<data_dir>/attngan_<dataset>/1.0.0``) for ``make_loader``.
    """
    if source is not None:
        factory = lambda: source  # noqa: E731
    else:
        factory = _default_factory(dataset, manual_dir, **source_kwargs)
    for path in glob.glob(os.path.join(data_dir, f"attngan_{dataset}", "incomplete.*")):
        # what a killed preparation left (TFDS writes incomplete.<id>_<version> and renames it
        # when done; it ignores these but never deletes them). One preparation per data_dir.
        logging.warning("removing %s, left by an interrupted dataset preparation", path)
        shutil.rmtree(path, ignore_errors=True)
    builder = builder_class(dataset)(
        data_dir=data_dir,
        source_factory=factory,
        image_format=image_format,
        progress=progress,
        workers=workers,
    )
    mode = tfds.download.GenerateMode
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            download_mode=mode.REUSE_DATASET_IF_EXISTS if not overwrite else mode.FORCE_REDOWNLOAD,
        ),
    )
    path = os.fspath(builder.data_path)
    if not is_prepared(path):
        raise RuntimeError(f"dataset generation finished but {path} is incomplete")
    return path
