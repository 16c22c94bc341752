"""CUB-200 and COCO-2014 as their owners distribute them, without the AttnGAN release's pickles.

COCO (cocodataset.org: ``annotations_trainval2014.zip``, ``train2014.zip``, ``val2014.zip``)::

    DATA_DIR/annotations/captions_train2014.json   -> split "train" (82,783 images)
    DATA_DIR/annotations/captions_val2014.json     -> split "test"  (40,504 images)
    DATA_DIR/train2014/COCO_train2014_<id>.jpg, DATA_DIR/val2014/COCO_val2014_<id>.jpg

An image's key is its file name without ``.jpg`` (the release's keys); images are in file-name
order. COCO has 5 to 7 captions per image; the first ``captions_per_image`` (5, the original's
``CAPTIONS_PER_IMAGE``) in annotation-id order are kept: the original draws one of exactly K
captions per image, and the id order (the order the captions were collected in) does not depend on
how the JSON file happens to list them. Captions are tokenised as the original tokenises
``text/*.txt``; one without any word is dropped (the original skips empty lines).

CUB-200-2011 (``CUB_200_2011.tgz`` from the Caltech data repository) and the captions of Reed et
al. 2016 (``cvpr2016_cub``: ``text_c10/<class>/<image>.txt``, 10 per image, with the class lists
``trainvalclasses.txt`` / ``testclasses.txt``)::

    DATA_DIR/CUB_200_2011/{images/, images.txt, bounding_boxes.txt}
    DATA_DIR/text_c10/<key>.txt  (or DATA_DIR/cvpr2016_cub/text_c10/)
    testclasses.txt beside text_c10/ (or trainvalclasses.txt)

The split is Reed et al.'s class-disjoint one that the release's pickles also hold: the 50 classes
of ``testclasses.txt`` are "test" (2,933 images), the other 150 "train" (8,855); images in
``images.txt`` order; class id = the class number (``017.Cardinal`` -> 17).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from attngan_jax.data.text import DataError, tokenize

logger = logging.getLogger(__name__)

COCO_FILES = {"train": "captions_train2014.json", "test": "captions_val2014.json"}
COCO_FOLDERS = {"train": "train2014", "test": "val2014"}
COCO_HINT = (
    "download annotations_trainval2014.zip, train2014.zip and val2014.zip from "
    "https://cocodataset.org/#download and unzip them into DATA_DIR (annotations/, train2014/, "
    "val2014/), or unzip the AttnGAN release's coco metadata (coco.zip: train|test/"
    "filenames.pickle, text/) into DATA_DIR"
)
CUB_HINT = (
    "download CUB_200_2011.tgz (https://data.caltech.edu/records/65de6-vp158) and Reed et al.'s "
    "captions cvpr2016_cub.tar.gz (https://github.com/reedscot/cvpr2016, 'CUB' data: text_c10/ "
    "and testclasses.txt) and extract both into DATA_DIR, or unzip the AttnGAN release's birds "
    "metadata (birds.zip: train|test/filenames.pickle, text/) into DATA_DIR"
)
CUB_SPLIT_SIZES = {"train": 8855, "test": 2933}


@dataclasses.dataclass
class OfficialLayout:
    """What a source needs from an official download.

    Attributes:
        keys: split -> image keys in order.
        paths: key -> image file.
        tokens: key -> tokenised captions (COCO); empty for CUB (caption files).
        caption_files: key -> caption file (CUB).
        class_ids: split -> class ids (None: one id per image, as the original without
            class_info.pickle).
    """

    keys: dict[str, list[str]]
    paths: dict[str, str]
    tokens: dict[str, list[list[str]]] = dataclasses.field(default_factory=dict)
    caption_files: dict[str, str] = dataclasses.field(default_factory=dict)
    class_ids: dict[str, list[int]] | None = None


def has_coco(data_dir: str) -> bool:
    """Whether ``data_dir`` holds the official COCO 2014 caption files."""
    return os.path.isfile(os.path.join(data_dir, "annotations", COCO_FILES["train"]))


def read_coco(data_dir: str, captions_per_image: int, allow_fewer: bool = False) -> OfficialLayout:
    """Reads ``annotations/captions_{train,val}2014.json`` (see the module docstring).

    Raises:
        DataError: a file is missing or malformed, or an image has fewer than
            ``captions_per_image`` usable captions (and ``allow_fewer`` is False).
    """
    keys, paths, tokens = {}, {}, {}
    more = dropped = 0
    for split, name in COCO_FILES.items():
        path = os.path.join(data_dir, "annotations", name)
        images, anns = _read_coco_json(path)
        by_image: dict[int, list[tuple[int, str]]] = {}
        for a in anns:
            by_image.setdefault(a["image_id"], []).append((a["id"], a["caption"]))
        split_keys = []
        for im in sorted(images, key=lambda im: im["file_name"]):
            key = os.path.splitext(im["file_name"])[0]
            caps = []
            for ann_id, caption in sorted(by_image.get(im["id"], [])):
                words = tokenize(caption)
                if not words:
                    dropped += 1
                    logger.debug("%s: annotation %d has no word: %r", path, ann_id, caption)
                    continue
                caps.append(words)
            if len(caps) < captions_per_image:
                msg = (
                    f"{path}: image {im['file_name']} (id {im['id']}) has {len(caps)} usable "
                    f"caption(s), expected {captions_per_image} (captions_per_image)"
                )
                if not caps or not allow_fewer:
                    raise DataError(f"{msg}; restore the file from annotations_trainval2014.zip")
                logger.warning("%s", msg)
            more += len(caps) > captions_per_image
            split_keys.append(key)
            paths[key] = os.path.join(data_dir, COCO_FOLDERS[split], im["file_name"])
            tokens[key] = caps[:captions_per_image]
        keys[split] = split_keys
    if dropped:
        logger.warning("COCO: %d caption(s) without any word dropped", dropped)
    if more:
        logger.info(
            "COCO: %d images have more than %d captions; the first %d by annotation id are kept",
            more,
            captions_per_image,
            captions_per_image,
        )
    return OfficialLayout(keys=keys, paths=paths, tokens=tokens)


def _read_coco_json(path: str) -> tuple[list[dict], list[dict]]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: not found; {COCO_HINT}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a JSON file ({e}); {COCO_HINT}") from None
    try:
        images = [{"id": int(i["id"]), "file_name": str(i["file_name"])} for i in doc["images"]]
        anns = [
            {"id": int(a["id"]), "image_id": int(a["image_id"]), "caption": str(a["caption"])}
            for a in doc["annotations"]
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(
            f"{path}: not a COCO captions file (needs images[].id/file_name and "
            f"annotations[].id/image_id/caption; {type(e).__name__}: {e}); {COCO_HINT}"
        ) from None
    return images, anns


def find_cub_captions(data_dir: str) -> str | None:
    """The ``text_c10`` folder of Reed et al.'s CUB captions under ``data_dir``, if any."""
    for d in (
        os.path.join(data_dir, "text_c10"),
        os.path.join(data_dir, "cvpr2016_cub", "text_c10"),
    ):
        if os.path.isdir(d):
            return d
    return None


def read_cub(data_dir: str, text_dir: str, image_keys: list[str]) -> OfficialLayout:
    """The class-disjoint split of ``image_keys`` (``images.txt`` order; module docstring).

    Args:
        data_dir: DATA_DIR.
        text_dir: the ``text_c10`` folder (:func:`find_cub_captions`).
        image_keys: every key of ``CUB_200_2011/images.txt``, in its order.

    Raises:
        DataError: no class list, or a listed class has no images.
    """
    base = os.path.dirname(text_dir)
    test_file, trainval_file = (
        os.path.join(base, n) for n in ("testclasses.txt", "trainvalclasses.txt")
    )
    classes = {k.split("/", 1)[0] for k in image_keys}
    if os.path.isfile(test_file):
        test = _read_classes(test_file, classes)
    elif os.path.isfile(trainval_file):
        test = classes - _read_classes(trainval_file, classes)
    else:
        raise DataError(f"{test_file}: not found (the class-disjoint split); {CUB_HINT}")
    keys = {
        "train": [k for k in image_keys if k.split("/", 1)[0] not in test],
        "test": [k for k in image_keys if k.split("/", 1)[0] in test],
    }
    if len(classes) == 200:
        for split, n in CUB_SPLIT_SIZES.items():
            if len(keys[split]) != n:
                logger.warning(
                    "CUB %s split: %d images, the release's has %d; check %s",
                    split,
                    len(keys[split]),
                    n,
                    test_file,
                )
    class_ids = {s: [_class_number(k) for k in ks] for s, ks in keys.items()}
    files = {k: os.path.join(text_dir, k + ".txt") for k in image_keys}
    return OfficialLayout(keys=keys, paths={}, caption_files=files, class_ids=class_ids)


def _read_classes(path: str, classes: set[str]) -> set[str]:
    with open(path, encoding="utf-8") as f:
        listed = {line.strip() for line in f if line.strip()}
    unknown = sorted(listed - classes)
    if unknown:
        raise DataError(
            f"{path}: class(es) {unknown[:5]} have no image in CUB_200_2011/images.txt; "
            "use the class list of the same CUB download"
        )
    return listed


def _class_number(key: str) -> int:
    prefix = key.split(".", 1)[0]
    return int(prefix) if prefix.isdigit() else 0
