"""COCO 2014 and CUB-200 as downloaded from their owners (no release pickles), on photo JPEGs.

The same images and captions in the release's layout and in the official one must give the same
prepared records (keys, order, captions, image bytes); the official one keeps the first 5 captions
of each COCO image by annotation id.
"""

import json
import os
import shutil
import sys

import numpy as np
import pytest
from paths import REPO
from test_stored_images import same_records

from attngan_jax.data import tfds_builders
from attngan_jax.data.original import COCOSource, CUBSource
from attngan_jax.data.text import DataError, tokenize

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import photos  # noqa: E402


def _official_only(root: str, release_paths) -> None:
    for p in release_paths:
        p = os.path.join(root, p)
        shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    base = tmp_path_factory.mktemp("coco")
    release = str(base / "release")
    photos.make_coco_folder(release, 24, val_fraction=0.25, release=True)
    official = str(base / "official")
    shutil.copytree(release, official, symlinks=True)
    _official_only(official, ["train", "test", "text", "images"])
    return release, official, str(base)


def test_coco_official_download_gives_the_release_records(coco):
    release, official, base = coco
    a = tfds_builders.prepare("coco", os.path.join(base, "a"), release, workers=0)
    b = tfds_builders.prepare("coco", os.path.join(base, "b"), official, workers=2)
    same_records(a, b)
    src = COCOSource(official)
    assert src.num_examples("train") + src.num_examples("test") == 24
    assert all(k.startswith("COCO_val2014_") for k in src._keys["test"])


def test_coco_keeps_the_first_five_captions_by_annotation_id(coco):
    _, official, _ = coco
    with open(os.path.join(official, "annotations", "captions_train2014.json")) as f:
        doc = json.load(f)
    by_image = {}
    for a in doc["annotations"]:  # listed out of id order in the file
        by_image.setdefault(a["image_id"], []).append((a["id"], a["caption"]))
    assert max(map(len, by_image.values())) == 6 and min(map(len, by_image.values())) == 5
    src = COCOSource(official)
    vocab = src.vocabulary()
    names = {im["id"]: os.path.splitext(im["file_name"])[0] for im in doc["images"]}
    keys = src._keys["train"]
    for image_id, anns in by_image.items():
        want = [tokenize(c) for _, c in sorted(anns)[:5]]
        got = src._captions["train"][keys.index(names[image_id])]
        assert [vocab.decode(c).split() for c in got] == want


def test_coco_layout_errors(coco, tmp_path):
    _, official, _ = coco
    d = str(tmp_path / "c")
    shutil.copytree(official, d)
    open(os.path.join(d, "captions.pickle"), "wb").close()
    with pytest.raises(DataError, match=r"captions\.pickle: the release's captions need"):
        COCOSource(d)
    os.remove(os.path.join(d, "captions.pickle"))
    path = os.path.join(d, "annotations", "captions_val2014.json")
    with open(path, "w") as f:
        json.dump({"images": [{"id": 1}], "annotations": []}, f)
    with pytest.raises(DataError, match=r"captions_val2014\.json: not a COCO captions file"):
        COCOSource(d)
    shutil.rmtree(os.path.join(d, "annotations"))
    with pytest.raises(DataError, match=r"filenames\.pickle: not found.*cocodataset\.org"):
        COCOSource(d)


def test_coco_image_without_enough_captions(coco, tmp_path):
    _, official, _ = coco
    d = str(tmp_path / "c")
    shutil.copytree(official, d)
    path = os.path.join(d, "annotations", "captions_train2014.json")
    with open(path) as f:
        doc = json.load(f)
    first = doc["images"][0]["id"]
    mine = [a for a in doc["annotations"] if a["image_id"] == first]
    for a in mine[: len(mine) - 4]:
        a["caption"] = " ... "  # no word: dropped, 4 left
    with open(path, "w") as f:
        json.dump(doc, f)
    with pytest.raises(DataError, match=r"has 4 usable caption\(s\), expected 5"):
        COCOSource(d)
    src = COCOSource(d, allow_fewer_captions=True, vocab_path=str(tmp_path / "v.json"))
    assert len(src._captions["train"][0]) == 4


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    base = tmp_path_factory.mktemp("cub")
    release = str(base / "release")
    photos.make_cub_folder(release, 32, test_every=4)  # classes of 4 images, every 4th: test
    official = str(base / "official")
    shutil.copytree(release, official)
    os.rename(os.path.join(official, "text"), os.path.join(official, "text_c10"))
    classes = sorted(os.listdir(os.path.join(official, "CUB_200_2011", "images")))
    test = [c for c in classes if int(c[:3]) % 4 == 0]
    with open(os.path.join(official, "testclasses.txt"), "w") as f:
        f.write("\n".join(test) + "\n")
    _official_only(official, ["train", "test"])
    return release, official, str(base)


def test_cub_official_download_gives_the_release_split(cub):
    release, official, base = cub
    r = CUBSource(release, vocab_path=os.path.join(base, "vr.json"))
    o = CUBSource(official, vocab_path=os.path.join(base, "vo.json"))
    for split in ("train", "test"):
        assert o._keys[split] == r._keys[split] and o._keys[split]
        assert o._captions[split] == r._captions[split]
        numbers = [int(k[:3]) for k in o._keys[split]]
        assert o._class_ids[split].tolist() == numbers  # class id = the class number
    a = tfds_builders.prepare("birds", os.path.join(base, "a"), official, workers=0)
    (ex,) = [e for e in o.stored_examples("test", workers=0)][:1]
    assert ex.key == o._keys["test"][0]
    with np.load(os.path.join(a, "index-test.npz")) as f:
        assert f["key"][0].decode() == ex.key and tuple(f["crop"][0]) == ex.image.crop


def test_cub_trainval_list_and_missing_list(cub, tmp_path):
    _, official, _ = cub
    d = str(tmp_path / "o")
    shutil.copytree(official, d)
    with open(os.path.join(d, "testclasses.txt")) as f:
        test = set(f.read().split())
    classes = sorted(os.listdir(os.path.join(d, "CUB_200_2011", "images")))
    os.remove(os.path.join(d, "testclasses.txt"))
    with pytest.raises(DataError, match=r"testclasses\.txt: not found.*cvpr2016"):
        CUBSource(d)
    with open(os.path.join(d, "trainvalclasses.txt"), "w") as f:
        f.write("\n".join(c for c in classes if c not in test) + "\n")
    src = CUBSource(d, vocab_path=str(tmp_path / "v.json"))
    assert {k.split("/")[0] for k in src._keys["test"]} == test
