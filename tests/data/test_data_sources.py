"""Dataset sources: original CUB/COCO layout, custom folders, vocabulary, tokeniser, pickles."""

import io
import logging
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from attngan_jax.data import vocab as vocab_mod
from attngan_jax.data.custom import CustomFolderSource, hash_fraction
from attngan_jax.data.original import COCOSource, CUBSource, bbox_crop_box, load_rgb
from attngan_jax.data.safe_pickle import UnsafePickleError, _safe_reconstructor, load_pickle
from attngan_jax.data.text import DataError, read_caption_file, sample_caption, tokenize
from attngan_jax.data.vocab import UnknownWordsError, Vocabulary

# ----------------------------------------------------------------------------- helpers


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python-2 ``str`` (SHORT_BINSTRING/BINSTRING), like a py2 pickle."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def py2_dump(obj, path):
    """A protocol-2 pickle as Python 2 wrote it (py2 str, numpy.core module names)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    data = buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    with open(path, "wb") as f:
        f.write(data)


def write_img(path, h, w, mode="RGB", seed=0, fmt=None):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if mode == "L":
        img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
        img = img.convert(mode)
    img.save(path, format=fmt)


def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


CUB_TRAIN = ["001.Alba/Alba_1", "001.Alba/Alba_2"]
CUB_TEST = ["002.Crow/Crow_1"]
# image size (h, w), bbox x y w h as written in bounding_boxes.txt
CUB_IMAGES = {
    "001.Alba/Alba_1": ((30, 40), "5.0 4.0 20.0 10.0"),
    "001.Alba/Alba_2": ((30, 40), "11.0 7.0 9.0 13.9"),  # 13.9 truncates to 13 (astype(int))
    "002.Crow/Crow_1": ((20, 24), "0.0 0.0 24.0 20.0"),
}
CUB_TEXT = {
    "001.Alba/Alba_1": "A white bird.\n\nIt has long WINGS!\nextra third caption\n",
    "001.Alba/Alba_2": "a grey bird\r\nsmall beak\n",
    "002.Crow/Crow_1": "a black crow\na black bird\n",
}


def make_cub(root, with_pickle=True):
    d = os.path.join(root, "birds")
    lines_i, lines_b = [], []
    for n, (key, ((h, w), box)) in enumerate(CUB_IMAGES.items(), start=1):
        mode = "L" if key.endswith("_2") else "RGB"  # one grayscale jpg
        write_img(os.path.join(d, "CUB_200_2011", "images", key + ".jpg"), h, w, mode, seed=n)
        lines_i.append(f"{n} {key}.jpg")
        lines_b.append(f"{n} {box}")
        write_text(os.path.join(d, "text", key + ".txt"), CUB_TEXT[key])
    write_text(os.path.join(d, "CUB_200_2011", "images.txt"), "\n".join(lines_i) + "\n")
    write_text(os.path.join(d, "CUB_200_2011", "bounding_boxes.txt"), "\n".join(lines_b) + "\n")
    for split, keys, cls in (("train", CUB_TRAIN, [1, 200]), ("test", CUB_TEST, [43459])):
        os.makedirs(os.path.join(d, split))
        py2_dump([k.encode() for k in keys], os.path.join(d, split, "filenames.pickle"))
        # numpy int64 data: 200 -> byte 0xC8 (invalid UTF-8), 43459 -> C3 A9 (valid UTF-8 'é')
        py2_dump(np.array(cls, np.int64), os.path.join(d, split, "class_info.pickle"))
    if with_pickle:
        ixtoword = {0: "<end>", 1: "a", 2: "bird", 3: "white", 4: "grey", 5: "black"}
        wordtoix = {w: i for i, w in ixtoword.items()}
        train = [[1, 3, 2], [3], [1, 4, 2], [4]]  # K = 2 captions per image
        test = [[1, 5, 2], [5]]
        py2_dump([train, test, ixtoword, wordtoix], os.path.join(d, "captions.pickle"))
    return d


def make_coco(root):
    d = os.path.join(root, "coco")
    keys = {"train": ["COCO_train2014_000000000009"], "test": ["COCO_val2014_000000000042"]}
    for split, ks in keys.items():
        os.makedirs(os.path.join(d, split))
        py2_dump([k.encode() for k in ks], os.path.join(d, split, "filenames.pickle"))
        for k in ks:
            write_img(os.path.join(d, "images", k + ".jpg"), 12, 16)
            write_text(os.path.join(d, "text", k + ".txt"), "a cat\na dog\na cat on a mat\n")
    return d


# ----------------------------------------------------------------------------- tokenisation


@pytest.mark.parametrize(
    "caption, tokens",
    [
        ("A RED crown, and white-belly.", "a red crown and white belly"),
        ("3 birds; snake_case", "3 birds snake_case"),
        ("café naïve", "caf nave"),  # non-ASCII characters stripped per token
        ("日本 bird", "bird"),  # token that becomes empty is dropped
        ("a\ufffd\ufffdb", "a b"),
        ("...!", ""),
    ],
)
def test_tokenize(caption, tokens):
    assert tokenize(caption) == tokens.split()


def test_read_caption_file(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("first one\n\n  \nsecond, one\nthird\n", encoding="utf-8")
    assert read_caption_file(p, 2) == [["first", "one"], ["second", "one"]]
    assert len(read_caption_file(p, None)) == 3
    with pytest.raises(DataError, match=r"c\.txt: 3 non-empty caption.*expected 4.*misaligned"):
        read_caption_file(p, 4)
    assert len(read_caption_file(p, 4, allow_fewer=True)) == 3


def test_read_caption_file_untokenizable_line(tmp_path, caplog):
    p = tmp_path / "c.txt"
    p.write_text("a bird\n?!\nanother bird\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.txt: line 2 yields no"):
        read_caption_file(p, 2)
    with caplog.at_level(logging.WARNING):
        caps = read_caption_file(p, 2, skip_untokenizable=True)
    assert caps == [["a", "bird"], ["another", "bird"]]
    assert "skipped 1 line" in caplog.text and "c.txt" in caplog.text
    with pytest.raises(DataError, match="caption file not found"):
        read_caption_file(tmp_path / "missing.txt", 1)


def test_sample_caption():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    x, n = sample_caption([5, 6, 7], 5, rng)
    assert x.dtype == np.int32 and x.tolist() == [5, 6, 7, 0, 0] and n == 3
    assert rng.bit_generator.state == state  # not consumed for short captions

    ids = np.arange(1, 21)
    outs = set()
    for seed in range(20):
        x, n = sample_caption(ids, 18, np.random.default_rng(seed))
        assert n == 18 and x.shape == (18,)
        assert np.all(np.diff(x) > 0)  # a subset, order preserved
        assert set(x.tolist()) <= set(ids.tolist())
        outs.add(tuple(x.tolist()))
        perm = np.arange(20)
        np.random.default_rng(seed).shuffle(perm)
        assert x.tolist() == ids[np.sort(perm[:18])].tolist()
    assert len(outs) > 5  # which words are dropped varies with the rng
    with pytest.raises(ValueError, match="padding"):
        sample_caption([3, 0, 2], 5, rng)
    with pytest.raises(ValueError, match="empty"):
        sample_caption([], 5, rng)


# ----------------------------------------------------------------------------- vocabulary


def test_vocabulary_build_encode_decode_roundtrip(tmp_path):
    caps = [["b", "a"], ["a", "c"], ["c", "a"], ["z", "y"]]
    v = Vocabulary.from_captions(caps)
    assert v.ixtoword == ["<end>", "a", "c", "b", "y", "z"]  # count desc, ties alphabetical
    assert Vocabulary.from_captions(caps[::-1]) == v  # independent of caption order
    assert len(v) == 6 and v.wordtoix["c"] == 2
    assert v.encode(["a", "q", "b"]) == [1, 3]
    with pytest.raises(UnknownWordsError, match=r"\['q', 'x'\]") as e:
        v.encode(["x", "a", "q"], unknown="error")
    assert e.value.words == ["q", "x"]
    assert v.decode([1, 2, 3, 0, 4]) == "a c b"  # stops at the end/padding token
    v.save(tmp_path / "vocab.json")
    w = Vocabulary.load(tmp_path / "vocab.json")
    assert w == v and w.wordtoix == v.wordtoix
    assert w.decode(w.encode(["y", "a", "z"])) == "y a z"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json"):
        Vocabulary.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="id 0"):
        Vocabulary(["a", "b"])


def test_vocabulary_atomic_save(tmp_path, monkeypatch):
    v = Vocabulary.from_captions([["a", "b"]])
    target = tmp_path / "vocab.json"

    def crash_dump(obj, f, **kw):
        f.write('{"format": "attngan_jax.vocabulary", "ixtoword": ["<e')  # partial write
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(vocab_mod.json, "dump", crash_dump)
    with pytest.raises(KeyboardInterrupt):
        v.save(target)
    assert os.listdir(tmp_path) == []  # neither vocab.json nor a temp file
    monkeypatch.undo()

    v.save(target)
    before = target.read_text()

    def crash_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(vocab_mod.os, "replace", crash_replace)
    with pytest.raises(OSError):
        Vocabulary.from_captions([["x"]]).save(target)
    assert os.listdir(tmp_path) == ["vocab.json"] and target.read_text() == before


def test_captions_pickle_vocabulary(tmp_path):
    d = make_cub(tmp_path)
    v = Vocabulary.from_captions_pickle(os.path.join(d, "captions.pickle"))
    assert v.ixtoword == ["<end>", "a", "bird", "white", "grey", "black"]
    bad = tmp_path / "bad.pickle"
    py2_dump([[], [], ["<end>", "a"], {"<end>": 0, "a": 2}], bad)
    with pytest.raises(DataError, match="wordtoix disagrees"):
        Vocabulary.from_captions_pickle(bad)


# ----------------------------------------------------------------------------- safe pickles


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.target}",))


def test_safe_pickle_refuses_code(tmp_path):
    target = tmp_path / "pwned"
    p = tmp_path / "evil.pickle"
    p.write_bytes(pickle.dumps([1, {"a": _Evil(target)}], protocol=2))
    with pytest.raises(UnsafePickleError, match=r"evil\.pickle.*(posix|os)\.system"):
        load_pickle(p)
    assert not target.exists()
    p.write_bytes(pickle.dumps(eval, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"(__builtin__|builtins)\.eval"):
        load_pickle(p)
    with pytest.raises(UnsafePickleError):
        _safe_reconstructor(os._wrap_close, object, None)
    # control: the payload is real - a plain unpickler runs it
    pickle.loads(pickle.dumps(_Evil(target), protocol=2))
    assert target.read_text().strip() == "pwned"


def test_safe_pickle_allowed_contents(tmp_path):
    import collections

    p = tmp_path / "ok.pickle"
    obj = [
        collections.OrderedDict(a=1),
        collections.defaultdict(list, {"k": [1]}),
        {1, 2},
        np.arange(3, dtype=np.float32),
        np.int64(7),
    ]
    for proto in (0, 2, 4):
        p.write_bytes(pickle.dumps(obj, protocol=proto))
        out = load_pickle(p)
        assert out[0] == obj[0] and out[1] == obj[1] and out[2] == {1, 2}
        np.testing.assert_array_equal(out[3], obj[3])
        assert out[4] == 7
    # Python-2 style: str keys as BINSTRING, numpy data needing the latin1 fallback
    py2_dump({b"key": np.array([200, 43459, 1], np.int64)}, p)
    out = load_pickle(p)
    assert list(out) == ["key"] and out["key"].tolist() == [200, 43459, 1]
    p.write_bytes(b"\x80\x02]q\x00(K\x01")  # truncated
    with pytest.raises(pickle.UnpicklingError, match=r"ok\.pickle"):
        load_pickle(p)


# ----------------------------------------------------------------------------- images


def test_bbox_crop_box_formula():
    assert bbox_crop_box([5, 4, 20, 10], 40, 30) == (0, 0, 30, 24)
    # r = int(13 * 0.75) = 9, cx = int(15.5) = 15, cy = int(13.5) = 13
    assert bbox_crop_box([11, 7, 9, 13], 40, 30) == (6, 4, 24, 22)
    assert bbox_crop_box([0, 0, 24, 20], 24, 20) == (0, 0, 24, 20)


def test_load_rgb_modes_and_errors(tmp_path):
    for mode in ("L", "CMYK", "RGBA", "P"):
        fmt = "PNG" if mode in ("RGBA", "P") else "JPEG"
        p = str(tmp_path / f"img_{mode}.{fmt.lower()}")
        write_img(p, 6, 9, mode, fmt=fmt)
        x = load_rgb(p)
        assert x.shape == (6, 9, 3) and x.dtype == np.uint8
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.jpg: unreadable"):
        load_rgb(bad)
    full = (tmp_path / "img_L.jpeg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match=r"trunc\.jpg"):
        load_rgb(tmp_path / "trunc.jpg")


# ----------------------------------------------------------------------------- CUB / COCO


def test_cub_with_captions_pickle(tmp_path):
    d = make_cub(tmp_path)
    src = CUBSource(d, captions_per_image=2)
    assert src.name == "birds" and src.splits() == ["train", "test"]
    assert src.num_examples("train") == 2 and src.num_examples("test") == 1
    assert len(src.vocabulary()) == 6
    train = list(src.examples("train"))
    assert [e.key for e in train] == CUB_TRAIN
    assert train[0].captions == [[1, 3, 2], [3]] and train[1].captions == [[1, 4, 2], [4]]
    assert [e.class_id for e in train] == [1, 200]
    (test,) = list(src.examples("test"))
    assert test.captions == [[1, 5, 2], [5]] and test.class_id == 43459
    for e, box in zip(train, [(0, 0, 30, 24), (6, 4, 24, 22)]):
        full = np.asarray(
            Image.open(os.path.join(d, "CUB_200_2011/images", e.key + ".jpg")).convert("RGB")
        )
        left, top, right, bottom = box
        assert e.image.dtype == np.uint8 and e.image.shape == (bottom - top, right - left, 3)
        np.testing.assert_array_equal(e.image, full[top:bottom, left:right])
    gray = train[1].image  # grayscale jpg -> RGB with equal channels
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    assert not os.path.exists(os.path.join(d, "vocab.json"))  # released vocabulary used
    with pytest.raises(DataError, match=r"captions\.pickle: 4 train captions for 2 images"):
        CUBSource(d, captions_per_image=10)


def test_cub_from_text_files(tmp_path):
    d = make_cub(tmp_path, with_pickle=False)
    src = CUBSource(d, captions_per_image=2)
    v = src.vocabulary()
    assert os.path.exists(os.path.join(d, "vocab.json"))
    assert v.ixtoword[:3] == ["<end>", "a", "bird"]  # 'a' x4, 'bird' x3, then alphabetical
    (e1, e2) = list(src.examples("train"))
    assert [v.decode(c) for c in e1.captions] == ["a white bird", "it has long wings"]
    assert [v.decode(c) for c in e2.captions] == ["a grey bird", "small beak"]
    assert Vocabulary.load(os.path.join(d, "vocab.json")) == v
    assert CUBSource(d, captions_per_image=2).vocabulary() == v  # re-used, same ids
    write_text(os.path.join(d, "text", "002.Crow/Crow_1.txt"), "a purple crow\na bird\n")
    with pytest.raises(UnknownWordsError, match="purple"):
        CUBSource(d, captions_per_image=2)
    assert "purple" in CUBSource(d, captions_per_image=2, rebuild_vocab=True).vocabulary().wordtoix


def test_cub_caption_errors(tmp_path):
    d = make_cub(tmp_path, with_pickle=False)
    with pytest.raises(DataError, match=r"Alba_2\.txt: 2 non-empty caption.*expected 3"):
        CUBSource(d, captions_per_image=3)
    write_text(os.path.join(d, "text", "001.Alba/Alba_2.txt"), "a grey bird\n;;\nsmall beak\n")
    with pytest.raises(DataError, match=r"Alba_2\.txt: line 2 yields no"):
        CUBSource(d, captions_per_image=2)
    assert CUBSource(d, captions_per_image=2, skip_untokenizable=True).num_examples("train") == 2
    os.remove(os.path.join(d, "text", "001.Alba/Alba_2.txt"))
    with pytest.raises(DataError, match=r"Alba_2\.txt: caption file not found"):
        CUBSource(d, captions_per_image=2)


def test_cub_missing_files(tmp_path):
    d = make_cub(tmp_path)
    os.remove(os.path.join(d, "CUB_200_2011", "bounding_boxes.txt"))
    with pytest.raises(DataError, match=r"bounding_boxes\.txt: not found.*CUB_200_2011\.tgz"):
        CUBSource(d, captions_per_image=2)
    os.remove(os.path.join(d, "test", "filenames.pickle"))
    with pytest.raises(DataError, match=r"test/filenames\.pickle: not found.*unzip"):
        CUBSource(d, captions_per_image=2)
    with pytest.raises(DataError, match="data directory not found"):
        CUBSource(tmp_path / "nowhere")


def test_cub_bad_images(tmp_path, caplog):
    d = make_cub(tmp_path)
    img = os.path.join(d, "CUB_200_2011", "images", "001.Alba/Alba_1.jpg")
    with open(img, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(DataError, match=r"Alba_1\.jpg: unreadable.*skip_bad_images"):
        list(CUBSource(d, captions_per_image=2).examples("train"))
    src = CUBSource(d, captions_per_image=2, skip_bad_images=True)
    with caplog.at_level(logging.WARNING):
        keys = [e.key for e in src.examples("train")]
    assert keys == ["001.Alba/Alba_2"] and src.skipped_images == 1 and "Alba_1.jpg" in caplog.text
    os.remove(img)
    with pytest.raises(DataError, match=r"Alba_1\.jpg: image not found"):
        list(CUBSource(d, captions_per_image=2).examples("train"))


def test_coco_source(tmp_path):
    d = make_coco(tmp_path)
    with pytest.raises(DataError, match=r"COCO_train2014_000000000009\.txt: 3 non-empty"):
        COCOSource(d)
    src = COCOSource(d, captions_per_image=2)
    (e,) = list(src.examples("train"))
    assert e.image.shape == (12, 16, 3) and e.class_id == 0  # uncropped, arange class ids
    assert [src.vocabulary().decode(c) for c in e.captions] == ["a cat", "a dog"]


# ----------------------------------------------------------------------------- custom folders


def make_custom(root):
    d = os.path.join(root, "custom")
    files = {
        "cats/c1.jpg": "a small cat\nthe cat sleeps\na cat on a mat\n",
        "cats/c2.PNG": "a grey cat\n\na cat\n",
        "dogs/d1.jpeg": "a dog runs\na happy dog\n",
        "dogs/sub/d2.webp": "a dog\nanother dog\nthird dog\n",
    }
    for n, (rel, text) in enumerate(files.items()):
        fmt = {".jpg": "JPEG", ".PNG": "PNG", ".jpeg": "JPEG", ".webp": "WEBP"}[
            os.path.splitext(rel)[1]
        ]
        write_img(os.path.join(d, rel), 8 + n, 10, "L" if n == 1 else "RGB", seed=n, fmt=fmt)
        write_text(os.path.join(d, os.path.splitext(rel)[0] + ".txt"), text)
    return d


KEYS = ["cats/c1", "cats/c2", "dogs/d1", "dogs/sub/d2"]


def test_custom_folder_basic(tmp_path):
    d = make_custom(tmp_path)
    src = CustomFolderSource(d, test_fraction=0.0)
    assert src.name == "custom" and src.splits() == ["train"]
    assert src.captions_per_image == 2  # min over the files
    exs = list(src.examples("train"))
    assert [e.key for e in exs] == KEYS
    assert [e.class_id for e in exs] == [0, 1, 2, 3]  # no classes: unique ids
    v = src.vocabulary()
    assert [v.decode(c) for c in exs[0].captions] == ["a small cat", "the cat sleeps"]
    assert [v.decode(c) for c in exs[1].captions] == ["a grey cat", "a cat"]
    assert exs[1].image.shape == (9, 10, 3)  # grayscale png -> RGB
    assert exs[3].image.shape == (11, 10, 3)
    assert Vocabulary.load(os.path.join(d, "vocab.json")) == v
    assert v == Vocabulary.from_captions(
        c for k in KEYS for c in read_caption_file(os.path.join(d, k + ".txt"), 2)
    )
    with pytest.raises(DataError, match=r"cats/c2\.txt: 2 non-empty caption.*expected 3"):
        CustomFolderSource(d, captions_per_image=3)


def test_custom_folder_classes(tmp_path):
    d = make_custom(tmp_path)
    src = CustomFolderSource(d, classes_from_subfolders=True, test_fraction=0.0)
    assert [e.class_id for e in src.examples("train")] == [0, 0, 1, 1]
    write_text(
        os.path.join(d, "classes.txt"),
        "path,label\n# comment\ncats/c1.jpg,tabby\ncats/c2,grey\ndogs/d1.jpeg,tabby\n"
        "dogs/sub/d2.webp,zz\n",
    )
    src = CustomFolderSource(d, test_fraction=0.0)  # classes.txt picked up by default
    assert [e.class_id for e in src.examples("train")] == [1, 0, 1, 2]  # sorted label names
    labels = tmp_path / "ints.csv"
    labels.write_text("cats/c1.jpg,7\ncats/c2.PNG,7\ndogs/d1,3\n")
    with pytest.raises(DataError, match=r"ints\.csv: no label for 1 image.*dogs/sub/d2"):
        CustomFolderSource(d, class_labels_file=labels)
    labels.write_text("cats/c1.jpg,7\ncats/c2.PNG,7\ndogs/d1,3\ndogs/sub/d2,3\n")
    src = CustomFolderSource(d, class_labels_file=labels, test_fraction=0.0)
    assert [e.class_id for e in src.examples("train")] == [7, 7, 3, 3]  # integer labels kept
    labels.write_text("cats/c9.jpg,1\n")
    with pytest.raises(DataError, match=r"ints\.csv: line 1: no image 'cats/c9\.jpg'"):
        CustomFolderSource(d, class_labels_file=labels)


def test_custom_folder_splits(tmp_path):
    d = make_custom(tmp_path)
    a = CustomFolderSource(d, test_fraction=0.5)
    b = CustomFolderSource(d, test_fraction=0.5)
    tr, te = ([e.key for e in a.examples(s)] for s in ("train", "test"))
    assert tr == [e.key for e in b.examples("train")]  # deterministic
    assert sorted(tr + te) == KEYS
    assert te == [k for k in KEYS if hash_fraction(k) < 0.5]
    split = tmp_path / "split.csv"
    split.write_text("cats/c1.jpg,test\ncats/c2,train\ndogs/d1,train\ndogs/sub/d2,test\n")
    s = CustomFolderSource(d, split_file=split)
    assert [e.key for e in s.examples("test")] == ["cats/c1", "dogs/sub/d2"]
    assert s.num_examples("train") == 2
    split.write_text("cats/c1.jpg,val\ncats/c2,train\ndogs/d1,train\ndogs/sub/d2,test\n")
    with pytest.raises(DataError, match="unknown split name"):
        CustomFolderSource(d, split_file=split)


def test_custom_folder_vocab_reuse(tmp_path):
    d = make_custom(tmp_path)
    v = CustomFolderSource(d).vocabulary()
    write_text(os.path.join(d, "cats", "c1.txt"), "a zebra cat\nthe cat sleeps\n")
    with pytest.raises(UnknownWordsError, match=r"vocab\.json.*zebra.*rebuild_vocab=True"):
        CustomFolderSource(d)
    w = CustomFolderSource(d, rebuild_vocab=True).vocabulary()
    assert "zebra" in w.wordtoix and "small" not in w.wordtoix and v != w
    assert Vocabulary.load(os.path.join(d, "vocab.json")) == w


def test_custom_folder_errors(tmp_path, caplog):
    d = make_custom(tmp_path)
    os.remove(os.path.join(d, "dogs", "d1.txt"))
    with pytest.raises(DataError, match=r"dogs/d1\.txt: caption file of image .*d1\.jpeg"):
        CustomFolderSource(d)
    write_text(os.path.join(d, "dogs", "d1.txt"), "a dog\n- -\nsecond dog\n")
    with pytest.raises(DataError, match=r"d1\.txt: line 2 yields no"):
        CustomFolderSource(d)
    write_text(os.path.join(d, "dogs", "d1.txt"), "a dog\nsecond dog\n")
    with open(os.path.join(d, "cats", "c2.PNG"), "wb") as f:
        f.write(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"c2\.PNG: unreadable"):
        list(CustomFolderSource(d, test_fraction=0.0).examples("train"))
    src = CustomFolderSource(d, test_fraction=0.0, skip_bad_images=True)
    with caplog.at_level(logging.WARNING):
        keys = [e.key for e in src.examples("train")]
    assert keys == ["cats/c1", "dogs/d1", "dogs/sub/d2"] and src.skipped_images == 1
    write_img(os.path.join(d, "cats", "c1.png"), 4, 4, fmt="PNG")
    with pytest.raises(DataError, match="rename one"):
        CustomFolderSource(d)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(DataError, match=r"empty: no images"):
        CustomFolderSource(tmp_path / "empty")
    with pytest.raises(DataError, match=r"nowhere: image folder not found"):
        CustomFolderSource(tmp_path / "nowhere")
