"""Bad input at every reader: one clear error naming the file or key; unusual input is handled.

Readers: custom caption folders, the original CUB/COCO layout (pickles, bounding boxes), the
vocabulary, weight files (.pth/.npz, TF checkpoints, FID statistics), model directories, configs
and flags, captions at sampling time; then ``train.py``/``eval.py`` as the user runs them (exit 2,
one ``error:`` line, no traceback). Nothing here compiles a network.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys

import ml_collections as mlc
import numpy as np
import pytest
from paths import REPO
from PIL import Image

from attngan_jax import cli, config_lib, model_dir
from attngan_jax.configs import attngan_birds, damsm_birds
from attngan_jax.convert.common import ConversionError
from attngan_jax.convert.release import generator_config_from_state_dict
from attngan_jax.convert.text_encoder import text_encoder_from_state_dict
from attngan_jax.convert.torch_io import load_state_dict
from attngan_jax.data import tfds_builders
from attngan_jax.data.custom import CustomFolderSource
from attngan_jax.data.original import CUBSource, load_rgb, read_cub_bounding_boxes
from attngan_jax.data.safe_pickle import PickleFormatError, UnsafePickleError, load_pickle
from attngan_jax.data.text import DataError
from attngan_jax.data.vocab import UnknownWordsError, Vocabulary, load_captions_pickle
from attngan_jax.errors import InputError, InputKeyError, MissingInputError
from attngan_jax.eval import run as eval_run
from attngan_jax.eval import sampling
from attngan_jax.metrics import fid, networks, tf_checkpoint


def png(path, size=(12, 10), mode="RGB", value=128):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new(mode, size, value if mode in ("L", "I;16", "P") else (value,) * len(mode)).save(path)


def folder(root, images=("a", "b"), captions="a red bird\nthe bird is small\n"):
    """A custom caption folder: ``<name>.png`` + ``<name>.txt`` each."""
    for name in images:
        png(os.path.join(root, name + ".png"))
        with open(os.path.join(root, name + ".txt"), "w") as f:
            f.write(captions)
    return str(root)


def test_error_classes():
    for cls in (DataError, ConversionError, tf_checkpoint.CheckpointFormatError,
                PickleFormatError, UnsafePickleError, InputKeyError, MissingInputError):  # fmt: skip
        assert issubclass(cls, InputError) and issubclass(cls, ValueError)
    assert issubclass(MissingInputError, FileNotFoundError)
    assert issubclass(PickleFormatError, pickle.UnpicklingError)
    assert issubclass(InputKeyError, KeyError) and str(InputKeyError("x: y")) == "x: y"


# ----------------------------------------------------------------------------- custom folders
def _no_caption(root):
    folder(root)
    os.remove(os.path.join(root, "b.txt"))


def _write(name, data):
    def make(root):
        folder(root)
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)

    return make


def _dup(root):
    folder(root)
    png(os.path.join(root, "a.jpg"))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda root: None, r"missing: image folder not found"),
        (lambda root: os.makedirs(root), r"no images .* found; put each image"),
        (_no_caption, r"b\.txt: caption file of image .*b\.png not found"),
        (_write("b.txt", b""), r"b\.txt: the file holds no caption"),
        (_write("b.txt", b"\n  \r\n\n"), r"b\.txt: the file holds no caption"),
        (_write("b.txt", b"a \xff\xfe bird\n"), r"b\.txt: not valid UTF-8.*save the file as UTF-8"),
        (_write("b.txt", b"a bird\n!!!\n"), r"b\.txt: line 2 yields no .*skip_untokenizable"),
        (_write("b.png", b"not an image"), r"b\.png: unreadable image.*skip_bad_images"),
        (_write("b.png", b""), r"b\.png: unreadable image"),
        (_dup, r"a\.(png|jpg): same name as .*rename one"),
        (_write("vocab.json", b"{not json"), r"vocab\.json: not a vocabulary JSON.*delete it"),
        (_write("vocab.json", b'{"a": 1}'), r"vocab\.json: not a vocabulary file"),
        (_write("classes.txt", b"a.png\n"), r"classes\.txt: line 1: expected 'relative/path,label"),
        (_write("classes.txt", b"a,cat\nzz,dog\n"), r"classes\.txt: line 2: no image 'zz'"),
    ],
    ids=[
        "missing",
        "no-images",
        "no-caption-file",
        "empty-caption-file",
        "blank-lines-only",
        "not-utf8",
        "no-word-line",
        "not-an-image",
        "zero-bytes",
        "same-stem",
        "vocab-not-json",
        "vocab-wrong-format",
        "classes-no-comma",
        "classes-unknown-image",
    ],  # fmt: skip
)
def test_custom_folder_errors(tmp_path, make, match):
    root = str(tmp_path / "missing")
    make(root)
    with pytest.raises(DataError, match=match):
        CustomFolderSource(root)


def test_custom_folder_refuses_before_writing_anything(tmp_path):
    root = folder(tmp_path / "f")
    with open(os.path.join(root, "b.png"), "wb") as f:
        f.write(b"GIF89a broken")
    with pytest.raises(DataError, match=r"b\.png"):
        CustomFolderSource(root)
    assert not os.path.exists(os.path.join(root, "vocab.json"))  # header check precedes it


def test_custom_folder_truncated_image_and_caption_counts(tmp_path):
    root = folder(tmp_path / "f", images=("a",))
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(full)
    (tmp_path / "f" / "b.png").write_bytes(full.read_bytes()[:300])  # header intact, data cut
    (tmp_path / "f" / "b.txt").write_text("a bird\n")
    with pytest.raises(DataError, match=r"b\.txt: 1 non-empty caption.*expected 2"):
        CustomFolderSource(root, captions_per_image=2)
    src = CustomFolderSource(root, test_fraction=0.0)
    with pytest.raises(DataError, match=r"b\.png: unreadable image.*skip_bad_images"):
        list(src.examples("train"))
    skip = CustomFolderSource(root, test_fraction=0.0, skip_bad_images=True)
    assert [e.key for e in skip.examples("train")] == ["a"] and skip.skipped_images == 1


def test_custom_folder_vocab_and_split_file(tmp_path):
    root = folder(tmp_path / "f")
    CustomFolderSource(root)  # writes vocab.json
    (tmp_path / "f" / "b.txt").write_text("a purple bird\n")
    with pytest.raises(
        UnknownWordsError, match=r"vocab\.json: the saved vocabulary lacks .*purple"
    ):
        CustomFolderSource(root)
    split = tmp_path / "split.csv"
    split.write_text("a,train\nb,validation\n")
    with pytest.raises(DataError, match=r"split\.csv: unknown split name.*validation"):
        CustomFolderSource(root, split_file=split, rebuild_vocab=True)


def test_custom_folder_handles_unusual_input(tmp_path, caplog):
    """Grayscale/RGBA/palette/16-bit/CMYK images, upper-case extensions, CRLF, BOM, blank lines."""
    root = tmp_path / "f"
    png(str(root / "gray.PNG"), mode="L", value=200)
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(root / "clear.png")  # fully transparent
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0] * 256)
    pal.info["transparency"] = 0
    pal.save(root / "pal.png", transparency=0)
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(root / "deep.png")  # 16-bit gray
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(root / "cmyk.JPG")
    png(str(root / "tiny.png"), size=(2, 1))
    (root / "sub").mkdir()
    png(str(root / "sub" / "upper.jpeg"))
    for name in ("gray", "clear", "pal", "deep", "cmyk", "tiny"):
        (root / f"{name}.txt").write_bytes(b"\xef\xbb\xbfa red bird\r\n\r\nthe bird\r\n\n\n")
    (root / "sub" / "upper.TXT").write_text("a red bird\nthe bird\n")
    (root / "orphan.txt").write_text("a caption without its image\n")
    with caplog.at_level(logging.WARNING):
        src = CustomFolderSource(root, test_fraction=0.0)
    assert "orphan.txt" in caplog.text and "without a same-named image" in caplog.text
    assert src.captions_per_image == 2
    ex = {e.key: e for e in src.examples("train")}
    assert sorted(ex) == ["clear", "cmyk", "deep", "gray", "pal", "sub/upper", "tiny"]
    v = src.vocabulary()
    assert [v.decode(c) for c in ex["gray"].captions] == ["a red bird", "the bird"]  # BOM, CRLF
    for e in ex.values():
        assert e.image.dtype == np.uint8 and e.image.ndim == 3 and e.image.shape[2] == 3
    assert (ex["clear"].image == 255).all() and (ex["pal"].image == 255).all()  # onto white
    assert 150 < ex["deep"].image.mean() < 160  # 40000 / 65535 * 255 = 155.6, not clipped
    assert (ex["gray"].image == 200).all() and ex["tiny"].image.shape == (1, 2, 3)


def test_load_rgb_applies_exif_orientation_only_when_asked(tmp_path):
    img = Image.new("RGB", (6, 3), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "r.jpg").shape == (3, 6, 3)  # as stored (CUB boxes use this)
    assert load_rgb(tmp_path / "r.jpg", exif_transpose=True).shape == (6, 3, 3)


# ----------------------------------------------------------------------------- original layout
def make_cub(root, keys=("001.A/A_1", "001.A/A_2")):
    """A two-image CUB tree in the original layout (no captions.pickle)."""
    cub = os.path.join(root, "CUB_200_2011")
    for split in ("train", "test"):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        with open(os.path.join(root, split, "filenames.pickle"), "wb") as f:
            pickle.dump(list(keys), f, protocol=2)
    lines, boxes = [], []
    for i, k in enumerate(keys, start=1):
        png(os.path.join(cub, "images", k + ".jpg"), size=(20, 16))
        os.makedirs(os.path.dirname(os.path.join(root, "text", k)), exist_ok=True)
        with open(os.path.join(root, "text", k + ".txt"), "w") as f:
            f.write("a bird\n")
        lines.append(f"{i} {k}.jpg")
        boxes.append(f"{i} 2.0 2.0 10.0 8.0")
    with open(os.path.join(cub, "images.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(cub, "bounding_boxes.txt"), "w") as f:
        f.write("\n".join(boxes) + "\n")
    return str(root)


def _dump(relpath, obj):
    def make(root):
        with open(os.path.join(root, relpath), "wb") as f:
            pickle.dump(obj, f, protocol=2)

    return make


def _raw(relpath, data):
    def make(root):
        path = os.path.join(root, relpath)
        with open(path, "wb") as f:
            f.write(data(path) if callable(data) else data)

    return make


def _rm(relpath):
    return lambda root: os.remove(os.path.join(root, relpath))


def _half(path):
    with open(path, "rb") as f:
        data = f.read()
    return data[: len(data) // 2]


_CAPS = [[1, 2], [2, 1]]
_VOCAB = ({0: "<end>", 1: "a", 2: "bird"}, {"<end>": 0, "a": 1, "bird": 2})


@pytest.mark.parametrize(
    "make, match",
    [
        (_rm("test/filenames.pickle"), r"test/filenames\.pickle: not found.*unzip"),
        (_dump("train/filenames.pickle", {"a": 1}), r"train/filenames\.pickle: expected a list"),
        (_raw("train/filenames.pickle", _half), r"train/filenames\.pickle: not a readable pickle"),
        (_raw("train/filenames.pickle", b"just text"), r"filenames\.pickle: not a readable pickle"),
        (_dump("train/class_info.pickle", [1, 2, 3]), r"class_info\.pickle: 3 class ids for 2"),
        (_dump("train/class_info.pickle", ["x", "y"]), r"class_info\.pickle: expected a list of"),
        (_dump("captions.pickle", [_CAPS, _CAPS, _VOCAB[0]]), r"captions\.pickle: expected \["),
        (_dump("captions.pickle", [5, _CAPS, *_VOCAB]), r"captions\.pickle: the train captions"),
        (_dump("captions.pickle", [[["a"]], _CAPS, *_VOCAB]), r"train caption 0 is not a list of"),
        (_dump("captions.pickle", [_CAPS, _CAPS, _VOCAB[0], [1]]), r"wordtoix is a list"),
        (_dump("captions.pickle", [_CAPS, _CAPS, {"x": "a"}, {}]), r"ixtoword keys are not int"),
        (_dump("captions.pickle", [_CAPS, [[7], [1]], *_VOCAB]), r"test caption 0 .* ids outs"),
        (_rm("CUB_200_2011/bounding_boxes.txt"), r"bounding_boxes\.txt: not found.*CUB_200_2011"),
        (_raw("CUB_200_2011/bounding_boxes.txt", b"1 2 2 10\n"), r"line 1: expected 5 fields"),
        (_raw("CUB_200_2011/bounding_boxes.txt", b"1 a b c d\n"), r"line 1: non-numeric box"),
        (_raw("CUB_200_2011/bounding_boxes.txt", b"1 2 2 0 8\n2 2 2 9 9\n"), r"positive size"),
        (_raw("CUB_200_2011/bounding_boxes.txt", b"1 2 2 9 9\n"), r"no box for image id\(s\)"),
        (_raw("CUB_200_2011/images.txt", b"\xff\xfe\n"), r"images\.txt: not a text file"),
    ],
    ids=[
        "no-filenames",
        "filenames-dict",
        "truncated-pickle",
        "not-a-pickle",
        "class-count",
        "class-not-int",
        "captions-3-items",
        "captions-not-list",
        "caption-not-ids",
        "wordtoix-list",
        "ixtoword-keys",
        "caption-id-range",
        "no-bbox-file",
        "bbox-columns",
        "bbox-text",
        "bbox-size",
        "bbox-missing-id",
        "images-txt-binary",
    ],  # fmt: skip
)
def test_original_layout_errors(tmp_path, make, match):
    root = make_cub(str(tmp_path / "birds"))
    make(root)
    with pytest.raises(DataError, match=match):
        CUBSource(root, captions_per_image=1)


def test_original_layout_missing_dir_and_image(tmp_path):
    with pytest.raises(DataError, match=r"nope: data directory not found.*birds\.zip"):
        CUBSource(str(tmp_path / "nope"))
    root = make_cub(str(tmp_path / "birds"))
    os.remove(os.path.join(root, "CUB_200_2011", "images", "001.A", "A_2.jpg"))
    src = CUBSource(root, captions_per_image=1)
    with pytest.raises(DataError, match=r"A_2\.jpg: image not found.*CUB_200_2011\.tgz"):
        list(src.examples("train"))
    assert len(read_cub_bounding_boxes(os.path.join(root, "CUB_200_2011"))) == 2


def test_safe_pickle_errors(tmp_path):
    with pytest.raises(MissingInputError, match=r"gone\.pickle: not found"):
        load_pickle(tmp_path / "gone.pickle")

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    (tmp_path / "evil.pickle").write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(UnsafePickleError, match=r"evil\.pickle: refused to load global"):
        load_pickle(tmp_path / "evil.pickle")
    with pytest.raises(MissingInputError, match=r"gone\.pickle: not found"):
        load_captions_pickle(tmp_path / "gone.pickle")


def test_vocabulary_file_errors(tmp_path):
    bad = tmp_path / "vocab.json"
    bad.write_text(json.dumps({"format": "attngan_jax.vocabulary", "ixtoword": ["a", "b"]}))
    with pytest.raises(DataError, match=r"vocab\.json: vocabulary: id 0 must be '<end>'"):
        Vocabulary.load(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match=r"vocab\.json: not a vocabulary JSON file.*delete it"):
        Vocabulary.load(bad)
    with pytest.raises(DataError, match=r"none\.json: vocabulary file not found"):
        Vocabulary.load(tmp_path / "none.json")


# ----------------------------------------------------------------------------- weight files
def test_state_dict_file_errors(tmp_path):
    with pytest.raises(MissingInputError, match=r"no\.pth"):
        load_state_dict(tmp_path / "no.pth")
    np.savez(tmp_path / "ok.npz", w=np.ones(3))
    (tmp_path / "cut.npz").write_bytes(_half(str(tmp_path / "ok.npz")))
    with pytest.raises(ConversionError, match=r"cut\.npz: not a readable \.npz"):
        load_state_dict(tmp_path / "cut.npz")
    np.savez(tmp_path / "obj.npz", w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ConversionError, match=r"obj\.npz: .*pickled objects"):
        load_state_dict(tmp_path / "obj.npz")
    with open(tmp_path / "one.npz", "wb") as f:
        np.save(f, np.ones(3))
    with pytest.raises(ConversionError, match=r"one\.npz: a single array"):
        load_state_dict(tmp_path / "one.npz")
    with pytest.raises(ConversionError, match=r"g\.npz: not an AttnGAN generator.*ca_net"):
        generator_config_from_state_dict(load_state_dict(tmp_path / "ok.npz"), "g.npz")
    with pytest.raises(ConversionError, match=r"t\.npz: not an RNN_ENCODER state dict"):
        text_encoder_from_state_dict({"w": np.ones(2)}, "t.npz")


def test_pth_file_errors(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save([torch.ones(2)], tmp_path / "list.pth")
    with pytest.raises(ConversionError, match=r"list\.pth: expected a state_dict"):
        load_state_dict(tmp_path / "list.pth")
    torch.save({"epoch": 3, "name": "x"}, tmp_path / "meta.pth")
    with pytest.raises(ConversionError, match=r"meta\.pth: holds no tensors"):
        load_state_dict(tmp_path / "meta.pth")
    torch.save({"w": torch.ones(100)}, tmp_path / "ok.pth")
    (tmp_path / "cut.pth").write_bytes(_half(str(tmp_path / "ok.pth")))
    with pytest.raises(ConversionError, match=r"cut\.pth: could not be read"):
        load_state_dict(tmp_path / "cut.pth")
    torch.save({"w": torch.ones(2), "opt": mlc.ConfigDict({"a": 1})}, tmp_path / "code.pth")
    with pytest.raises(ConversionError, match=r"code\.pth: .*refused on purpose"):
        load_state_dict(tmp_path / "code.pth")


def test_inception_and_tf_checkpoint_errors(tmp_path):
    with pytest.raises(MissingInputError, match=r"nope\.pth"):
        networks.load_eval_inception(str(tmp_path / "nope.pth"))
    np.savez(tmp_path / "fc7.npz", **{"fc.weight": np.zeros((7, 2))})
    with pytest.raises(InputError, match="--inception_kind=bad"):
        networks.load_eval_inception(str(tmp_path / "fc7.npz"), kind="bad")
    with pytest.raises(ConversionError, match=r"fc7\.npz: cannot tell.*7 classes"):
        networks.load_eval_inception(str(tmp_path / "fc7.npz"))
    with pytest.raises(MissingInputError, match=r"no TensorFlow checkpoint at .*model\.ckpt"):
        tf_checkpoint.read_tf_checkpoint(str(tmp_path / "model.ckpt"))
    (tmp_path / "junk.ckpt").write_bytes(b"x" * 100)
    with pytest.raises(tf_checkpoint.CheckpointFormatError, match=r"junk\.ckpt: .*magic"):
        tf_checkpoint.read_tf_checkpoint(str(tmp_path / "junk.ckpt"))
    footer = b"\xff" * 40 + (0xDB4775248B80FB57).to_bytes(8, "little")  # magic, garbage handles
    (tmp_path / "cut.ckpt").write_bytes(b"\0" * 16 + footer)
    with pytest.raises(tf_checkpoint.CheckpointFormatError, match=r"cut\.ckpt: damaged|cut"):
        tf_checkpoint.read_tf_checkpoint(str(tmp_path / "cut.ckpt"))


def test_damsm_inception_weights_setting(tmp_path):
    config = damsm_birds.get_config()
    with pytest.raises(InputError, match=r"--config\.damsm\.inception_weights=PATH"):
        config_lib.inception_weights_path(config)
    config.damsm.inception_weights = str(tmp_path / "w.pth")
    with pytest.raises(MissingInputError, match=r"--config\.damsm\.inception_weights=.*w\.pth"):
        config_lib.inception_weights_path(config)


def test_fid_reference_errors(tmp_path):
    with pytest.raises(MissingInputError, match=r"ref\.npz"):
        fid.load_reference_stats(str(tmp_path / "ref.npz"))
    (tmp_path / "ref.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"ref\.npz: not a readable \.npz"):
        fid.load_reference_stats(str(tmp_path / "ref.npz"))
    np.savez(tmp_path / "ref.npz", m=np.zeros(2))
    with pytest.raises(InputKeyError, match=r"ref\.npz: expected arrays 'mu'"):
        fid.load_reference_stats(str(tmp_path / "ref.npz"))


# ----------------------------------------------------------------------------- model directories
def test_model_directory_errors(tmp_path):
    d = tmp_path / "m"
    with pytest.raises(MissingInputError, match=r"m: not a model directory"):
        model_dir.resolve(str(d))
    with pytest.raises(MissingInputError, match=r"model\.json not found"):
        model_dir.load_model_config(str(d))
    d.mkdir()
    (d / "model.json").write_text("{broken")
    with pytest.raises(InputError, match=r"model\.json: not valid JSON"):
        model_dir.load_model_config(str(d))
    (d / "model.json").write_text("[1, 2]")
    with pytest.raises(InputError, match=r"model\.json: not a JSON object"):
        model_dir.load_model_config(str(d))
    (d / "model.json").write_text(json.dumps({"gf_dim": 4, "words_num": 5}))
    with pytest.raises(InputError, match=r"model\.json: lacks the key\(s\) \['image_sizes'"):
        sampling.load_model(str(d))
    with pytest.raises(MissingInputError, match=r"generator: no exported networks here"):
        model_dir.load_generator(str(d))
    (d / "model" / "generator").mkdir(parents=True)
    (d / "model" / "generator" / "junk").write_text("x")
    with pytest.raises(InputError, match=r"generator: cannot be read"):
        model_dir.load_generator(str(d))


# ----------------------------------------------------------------------------- captions to sample
def test_sampling_captions(tmp_path, caplog):
    vocab = Vocabulary(["<end>", "a", "red", "bird"])
    with pytest.raises(DataError, match="no captions given"):
        sampling.encode_captions(vocab, [], 5)
    with pytest.raises(DataError, match=r"caption 1 \('!!!'\) is empty"):
        sampling.encode_captions(vocab, ["a bird", "!!!"], 5)
    with pytest.raises(DataError, match=r"caption 0 \('zebra stripes'\): none of its words.*zebra"):
        sampling.encode_captions(vocab, ["zebra stripes"], 5)
    with caplog.at_level(logging.WARNING):
        ids, lens, words, unknown = sampling.encode_captions(vocab, ["a purple bird"], 5)
    assert "purple" in caplog.text and words == [["a", "bird"]] and unknown == [["purple"]]
    assert lens.tolist() == [2]
    with pytest.raises(MissingInputError, match=r"--captions=.*caps\.txt: no such file"):
        eval_run.read_captions(str(tmp_path / "caps.txt"))
    (tmp_path / "caps.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(DataError, match=r"caps\.txt: not UTF-8"):
        eval_run.read_captions(str(tmp_path / "caps.txt"))
    (tmp_path / "caps.txt").write_bytes(b"\r\n \n")
    with pytest.raises(DataError, match=r"caps\.txt: no captions"):
        eval_run.read_captions(str(tmp_path / "caps.txt"))
    (tmp_path / "caps.txt").write_bytes(b"\xef\xbb\xbfa red bird\r\n\r\na bird\r\n")
    assert eval_run.read_captions(str(tmp_path / "caps.txt")) == ["a red bird", "a bird"]
    with pytest.raises(InputError, match="--num_samples=0"):
        eval_run.sample(str(tmp_path), ["a bird"], str(tmp_path / "out"), num_samples=0)


# ----------------------------------------------------------------------------- configs and flags
def _ready(config, tmp_path):
    """Fills the paths a config needs, so only the value under test is wrong."""
    (tmp_path / "damsm" / "model" / "damsm").mkdir(parents=True, exist_ok=True)
    (tmp_path / "manual").mkdir(exist_ok=True)
    config.gan.damsm_checkpoint = str(tmp_path / "damsm")
    config.data.manual_dir = str(tmp_path / "manual")
    config.data.data_dir = str(tmp_path / "data")
    config.damsm.inception_weights = "random"
    return config


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(REPO, "configs"))))
def test_every_config_validates(tmp_path, name):
    import importlib.util

    spec = importlib.util.spec_from_file_location("c", os.path.join(REPO, "configs", name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for variant in (None, "tiny"):
        config_lib.validate(_ready(module.get_config(variant), tmp_path))
    with pytest.raises(InputError, match=r"unknown config variant 'tyni' \(--config=FILE:tyni\)"):
        module.get_config("tyni")


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("phase", "train", r"--config\.phase='train': must be one of damsm, attngan, demo"),
        ("dtype", "float16", r"--config\.dtype='float16': must be one of float32, bfloat16"),
        ("data.name", "flowers", r"--config\.data\.name='flowers'"),
        ("model.image_trunk", "resnet", r"--config\.model\.image_trunk='resnet'"),
        ("gan.batch_size", 0, r"--config\.gan\.batch_size=0: must be an integer >= 1"),
        ("damsm.batch_size", -2, r"--config\.damsm\.batch_size=-2"),
        ("data.words_num", 0, r"--config\.data\.words_num=0"),
        ("gan.g_lr", 0.0, r"--config\.gan\.g_lr=0\.0: must be a number in \(0, inf\)"),
        ("damsm.lr", -1.0, r"--config\.damsm\.lr=-1\.0"),
        ("damsm.lr_decay", 1.5, r"--config\.damsm\.lr_decay=1\.5: must be a number in \(0, 1\]"),
        ("gan.beta1", 1.0, r"--config\.gan\.beta1=1\.0"),
        ("log_every", 0, r"--config\.log_every=0"),
        ("data.image_sizes", ("abc",), r"--config\.data\.image_sizes=\('abc',\): must be a tuple"),
        ("data.image_sizes", (128, 64, 256), r"image_sizes=\(128, 64, 256\): sizes must be incr"),
        ("data.image_sizes", (64, 128), r"3 stages from --config\.model\.base_size=64 make \(64,"),
        ("model.base_size", 48, r"--config\.model\.base_size=48: must be a power of two"),
        (
            "model.base_size",
            128,
            r"base_size=128: the discriminators go up to 256 \(\(128, 256, 512",
        ),
        ("gan.recolour_negatives", True, r"--config\.gan\.recolour_negatives=True"),
        ("data.cache_images", True, r"cache_images=True: .*--config\.data\.random_crop=False"),
        ("gan.damsm_checkpoint", "", r"--config\.gan\.damsm_checkpoint='': AttnGAN training needs"),
        ("gan.damsm_checkpoint", "/nope", r"damsm_checkpoint='/nope': no DAMSM encoders in it"),
        ("data.manual_dir", "", r"--config\.data\.manual_dir='': birds is not prepared"),
        ("data.manual_dir", "/nope", r"--config\.data\.manual_dir='/nope': no such folder"),
    ],
)
def test_validate_names_the_key(tmp_path, key, value, match):
    config = _ready(attngan_birds.get_config(), tmp_path)
    node = config
    for part in key.split(".")[:-1]:
        node = node[part]
    node[key.split(".")[-1]] = value
    with pytest.raises(InputError, match=match):
        config_lib.validate(config)


def test_flag_errors_are_one_line(capsys):
    from absl import flags
    from ml_collections import config_flags

    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, flag_values=fv)
    for argv, match in (
        (["--config=configs/shapes.py:nope"], "--config=configs/shapes.py:nope: unknown config"),
        (["--no_such_flag=1"], "no_such_flag"),
    ):
        with pytest.raises(SystemExit) as e:
            cli.parse_flags(["prog", *argv], fv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and match in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    message = cli.unknown_override(config_lib.base_config(), ["--config.gan.batch_siz=3"])
    assert message.startswith("--config.gan.batch_siz: no such config key; did you mean "
                              "--config.gan.batch_size?")  # fmt: skip


# ----------------------------------------------------------------------------- the entry points
def _run(script, *args, cwd=REPO):
    env = dict(os.environ, JAX_PLATFORMS="cpu", ATTNGAN_KEEP_MALLOC="1")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, script), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=cwd,
    )  # fmt: skip


def _assert_one_line_error(r, *fragments):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines and lines[-1].startswith("error: "), r.stderr[-3000:]
    assert sum(line.startswith("error: ") for line in lines) == 1
    for f in fragments:
        assert f in lines[-1], lines[-1]


def test_train_py_unknown_config_key():
    r = _run("train.py", "--config.gan.batch_siz=3", "--workdir=/nonexistent/never")
    _assert_one_line_error(r, "--config.gan.batch_siz", "--config.gan.batch_size")


def test_train_py_bad_image_in_custom_folder(tmp_path):
    root = folder(tmp_path / "pets")
    (tmp_path / "pets" / "b.png").write_bytes(b"not an image")
    r = _run(
        "train.py", "--config=configs/damsm_custom.py:tiny", f"--workdir={tmp_path / 'run'}",
        f"--config.data.manual_dir={root}", f"--config.data.data_dir={tmp_path / 'data'}",
    )  # fmt: skip
    _assert_one_line_error(r, "b.png: unreadable image", "skip_bad_images")
    assert not os.path.exists(os.path.join(root, "vocab.json"))
    prepared = os.path.join(tmp_path, "data", "attngan_custom", tfds_builders.VERSION)
    assert not os.path.exists(prepared)  # nothing half-written


def test_eval_py_missing_model_dir(tmp_path):
    r = _run("eval.py", "--mode=sample", f"--workdir={tmp_path / 'nope'}", "--caption=a bird")
    _assert_one_line_error(r, "nope: not a model directory")


def test_evaluation_data_dir_and_metric_names(tmp_path):
    from attngan_jax.eval import evaluators

    with pytest.raises(
        MissingInputError, match=r"no prepared 'shapes' dataset at .*nope.*--data_dir"
    ):
        evaluators.resolve_data_path(str(tmp_path / "nope"), "shapes")
    with pytest.raises(InputError, match=r"unknown metrics \['inception'\]; choose from"):
        evaluators.evaluate(str(tmp_path), metrics=["inception"])
