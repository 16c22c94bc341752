"""Photograph JPEGs and COCO/CUB-layout folders made from them, for tests and benchmarks.

There is no photo data set on our machines (and nothing may be downloaded), but ``scikit-image``
(the ``test`` extra) ships real colour photographs in ``skimage/data``: ``astronaut.png`` (NASA),
``chelsea.png`` (a cat), ``coffee.png``, ``motorcycle_left.png`` / ``motorcycle_right.png``,
``rocket.jpg``, ``hubble_deep_field.jpg``, ``retina.jpg``, ``ihc.png`` and the grey ``camera.png``.
:func:`photo_jpeg` cuts a random window out of one of them (scaled so it covers the window, randomly
mirrored) and saves it as a baseline JPEG, so the files have the statistics and the decode cost of
photographs, not of drawn shapes. Only the files are read (``skimage`` is never imported).

:func:`make_coco_folder` writes the official COCO 2014 layout (``annotations/captions_*2014.json``,
``train2014/``, ``val2014/``) and, optionally, the AttnGAN release's layout beside it (pickles,
``text/``, ``images/`` as links); :func:`make_cub_folder` a ``CUB_200_2011/`` tree with boxes.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle

import numpy as np
from PIL import Image

PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "camera.png",
)
WORDS = "a an the man woman dog cat bird red blue small large sitting on with of in near street table".split()
_CACHE: dict[str, Image.Image] = {}


def photo_dir() -> str:
    """``skimage/data`` of the installed scikit-image (``pip install scikit-image``)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise RuntimeError("the photographs come with scikit-image: pip install scikit-image")
    return os.path.join(os.path.dirname(spec.origin), "data")


def photo(name: str) -> Image.Image:
    """One of :data:`PHOTOS` as an RGB PIL image (cached)."""
    if name not in _CACHE:
        with Image.open(os.path.join(photo_dir(), name)) as img:
            _CACHE[name] = img.convert("RGB")
    return _CACHE[name]


def photo_crop(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A random ``width x height`` window of a random photograph (scaled to cover it, maybe mirrored)."""
    src = photo(PHOTOS[int(rng.integers(len(PHOTOS)))])
    scale = max(width / src.width, height / src.height) * float(rng.uniform(1.0, 1.6))
    w, h = max(width, round(src.width * scale)), max(height, round(src.height * scale))
    img = src.resize((w, h), Image.BICUBIC) if (w, h) != src.size else src
    left, top = int(rng.integers(0, w - width + 1)), int(rng.integers(0, h - height + 1))
    img = img.crop((left, top, left + width, top + height))
    return img.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img


def photo_jpeg(rng: np.random.Generator, width: int = 640, height: int = 480, quality=90) -> bytes:
    """The bytes of a :func:`photo_crop` saved as a JPEG (PIL, 4:2:0, ``quality``)."""
    buf = io.BytesIO()
    photo_crop(rng, width, height).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _caption(rng: np.random.Generator) -> str:
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), int(rng.integers(5, 22))))


def make_coco_folder(
    root: str, num_images: int, *, seed: int = 0, val_fraction: float = 0.3, release: bool = False
) -> dict[str, int]:
    """Writes a COCO 2014 folder of photograph JPEGs (640x480, a few 480x640).

    Layout: ``annotations/captions_{train,val}2014.json`` (``images`` and ``annotations`` as the
    official files; 5 captions per image, every 7th image 6 and every 11th 7 as in COCO),
    ``train2014/COCO_train2014_<id:012d>.jpg``, ``val2014/COCO_val2014_<id:012d>.jpg``. With
    ``release=True`` also the AttnGAN release's files: ``{train,test}/filenames.pickle``,
    ``text/<key>.txt`` (the first 5 captions) and ``images/<key>.jpg`` links.

    Returns:
        ``{"images", "jpeg_bytes"}``.
    """
    rng = np.random.default_rng(seed)
    total = 0
    splits = {"train2014": [], "val2014": []}
    ann_id = 0
    anns = {"train2014": [], "val2014": []}
    for i in range(num_images):
        split = "val2014" if rng.random() < val_fraction else "train2014"
        image_id = 1000 + 7 * i
        name = f"COCO_{split}_{image_id:012d}.jpg"
        w, h = (480, 640) if i % 9 == 4 else (640, 480)
        data = photo_jpeg(rng, w, h)
        os.makedirs(os.path.join(root, split), exist_ok=True)
        with open(os.path.join(root, split, name), "wb") as f:
            f.write(data)
        total += len(data)
        splits[split].append({"id": image_id, "file_name": name, "width": w, "height": h})
        for _ in range(5 + (i % 7 == 3) + (i % 11 == 5)):
            ann_id += 1
            anns[split].append({"id": ann_id, "image_id": image_id, "caption": _caption(rng)})
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split, images in splits.items():
        order = rng.permutation(len(anns[split]))  # the official files are not sorted by id
        doc = {"images": images, "annotations": [anns[split][j] for j in order]}
        with open(os.path.join(root, "annotations", f"captions_{split}.json"), "w") as f:
            json.dump(doc, f)
    if release:
        _release_layout(root, splits, anns)
    return {"images": num_images, "jpeg_bytes": total}


def _release_layout(root: str, splits: dict, anns: dict) -> None:
    os.makedirs(os.path.join(root, "text"), exist_ok=True)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    for folder, split in (("train2014", "train"), ("val2014", "test")):
        keys = [os.path.splitext(im["file_name"])[0] for im in splits[folder]]
        os.makedirs(os.path.join(root, split), exist_ok=True)
        with open(os.path.join(root, split, "filenames.pickle"), "wb") as f:
            pickle.dump(keys, f, protocol=2)
        caps: dict[int, list] = {}
        for a in sorted(anns[folder], key=lambda a: a["id"]):
            caps.setdefault(a["image_id"], []).append(a["caption"])
        for im, key in zip(splits[folder], keys):
            with open(os.path.join(root, "text", key + ".txt"), "w") as f:
                f.write("\n".join(caps[im["id"]][:5]) + "\n")
            link = os.path.join(root, "images", key + ".jpg")
            if not os.path.lexists(link):
                os.symlink(os.path.join("..", folder, im["file_name"]), link)


def make_cub_folder(root: str, num_images: int, *, seed: int = 0, test_every: int = 4) -> dict:
    """Writes a CUB-200 folder of photograph JPEGs in the AttnGAN release layout.

    ``CUB_200_2011/images/<class>/<name>.jpg`` (sizes around CUB's 500x375), ``images.txt``,
    ``bounding_boxes.txt`` (a box over 30-90 % of each side), ``text/<key>.txt`` (10 captions),
    ``{train,test}/filenames.pickle`` (every ``test_every``-th class is a test class).

    Returns:
        ``{"images", "jpeg_bytes"}``.
    """
    rng = np.random.default_rng(seed)
    cub = os.path.join(root, "CUB_200_2011")
    lines_i, lines_b, total = [], [], 0
    keys: dict[str, list[str]] = {"train": [], "test": []}
    per_class = min(60, max(1, num_images // (2 * test_every)))  # CUB: ~60 images per class
    for n in range(1, num_images + 1):
        cls = 1 + (n - 1) // per_class
        key = f"{cls:03d}.Bird_{cls}/Bird_{cls}_{n:05d}_{n}"
        w = int(rng.integers(400, 501))
        h = int(rng.integers(280, 501)) if n % 5 else int(rng.integers(500, 601))
        data = photo_jpeg(rng, w, h, quality=int(rng.integers(75, 96)))
        path = os.path.join(cub, "images", key + ".jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        total += len(data)
        bw, bh = int(w * rng.uniform(0.3, 0.9)), int(h * rng.uniform(0.3, 0.9))
        x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        lines_i.append(f"{n} {key}.jpg")
        lines_b.append(f"{n} {x}.0 {y}.0 {bw}.0 {bh}.0")
        text = os.path.join(root, "text", key + ".txt")
        os.makedirs(os.path.dirname(text), exist_ok=True)
        with open(text, "w") as f:
            f.write("\n".join(_caption(rng) for _ in range(10)) + "\n")
        keys["test" if cls % test_every == 0 else "train"].append(key)
    with open(os.path.join(cub, "images.txt"), "w") as f:
        f.write("\n".join(lines_i) + "\n")
    with open(os.path.join(cub, "bounding_boxes.txt"), "w") as f:
        f.write("\n".join(lines_b) + "\n")
    for split, ks in keys.items():
        os.makedirs(os.path.join(root, split), exist_ok=True)
        with open(os.path.join(root, split, "filenames.pickle"), "wb") as f:
            pickle.dump(ks, f, protocol=2)
    return {"images": num_images, "jpeg_bytes": total}
