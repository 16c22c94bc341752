"""Records keep the image files; loading them gives the original ``get_imgs`` pixels (photographs).

The photographs are crops of the real photos scikit-image ships (``benchmarks/photos.py``), saved as
JPEG; the reference is the original pipeline's PIL steps written out here (reference §12.5):
``Image.open(path).convert('RGB')``, the CUB bbox crop, ``Scale(int(256 * 76 / 64))``, the crop at
(top, left), the flip, ``Scale(s)`` for the smaller sizes, ``ToTensor`` + ``Normalize(0.5, 0.5)``.
"""

import io
import os
import pickle
import sys

import numpy as np
import pytest
from paths import REPO
from PIL import Image

from attngan_jax.data import image_files, pipeline, tfds_builders
from attngan_jax.data.original import CUBSource
from attngan_jax.data.text import DataError

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import photos  # noqa: E402

SIZES = (64, 128, 256)
# key: (width, height, mode saved, bbox x y w h)
BIRDS = {
    "001.Alba/Alba_1": (320, 240, "RGB", (40, 30, 200, 150)),
    "001.Alba/Alba_2": (240, 320, "RGB", (0, 0, 240, 320)),  # box = whole image: nothing cut
    "001.Alba/Alba_3": (300, 225, "L", (180, 120, 110, 90)),  # grayscale JPEG, box at the edge
    "002.Crow/Crow_1": (500, 375, "RGB", (100, 80, 60, 200)),
    "002.Crow/Crow_2": (280, 210, "CMYK", (20, 20, 150, 100)),  # CMYK JPEG: re-encoded
    "002.Crow/Crow_3": (360, 270, "RGB", (10, 200, 40, 50)),  # small box: upscaled
}
TRAIN = ["001.Alba/Alba_1", "001.Alba/Alba_2", "001.Alba/Alba_3", "002.Crow/Crow_1"]
TEST = ["002.Crow/Crow_2", "002.Crow/Crow_3"]


def make_cub_photos(root: str) -> str:
    """A CUB tree (pickled key lists, text/, images.txt, bounding_boxes.txt) of photo JPEGs."""
    rng = np.random.default_rng(0)
    d = os.path.join(root, "birds")
    lines_i, lines_b = [], []
    for n, (key, (w, h, mode, box)) in enumerate(BIRDS.items(), start=1):
        path = os.path.join(d, "CUB_200_2011", "images", key + ".jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        photos.photo_crop(rng, w, h).convert(mode).save(path, format="JPEG", quality=90)
        lines_i.append(f"{n} {key}.jpg")
        lines_b.append(f"{n} " + " ".join(f"{v}.0" for v in box))
        os.makedirs(os.path.join(d, "text", os.path.dirname(key)), exist_ok=True)
        with open(os.path.join(d, "text", key + ".txt"), "w") as f:
            f.write(f"a bird number {n}\nthis bird has {mode} feathers and a beak\n")
    with open(os.path.join(d, "CUB_200_2011", "images.txt"), "w") as f:
        f.write("\n".join(lines_i) + "\n")
    with open(os.path.join(d, "CUB_200_2011", "bounding_boxes.txt"), "w") as f:
        f.write("\n".join(lines_b) + "\n")
    for split, keys in (("train", TRAIN), ("test", TEST)):
        os.makedirs(os.path.join(d, split))
        with open(os.path.join(d, split, "filenames.pickle"), "wb") as f:
            pickle.dump(keys, f, protocol=2)
    return d


def original_get_imgs(path, bbox, top, left, flip):
    """The original's ``get_imgs`` (reference §12.5) with the given crop offsets and flip."""
    img = Image.open(path).convert("RGB")
    if bbox is not None:
        x, y, w, h = bbox
        r = int(max(w, h) * 0.75)
        cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
        W, H = img.size
        img = img.crop([max(0, cx - r), max(0, cy - r), min(W, cx + r), min(H, cy + r)])
    size, imsize = int(256 * 76 / 64), 256
    w, h = img.size
    if not ((w <= h and w == size) or (h <= w and h == size)):  # torchvision Scale
        img = img.resize((size, int(size * h / w)) if w < h else (int(size * w / h), size), 2)
    img = img.crop((left, top, left + imsize, top + imsize))  # RandomCrop at (top, left)
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    out = {}
    for s in SIZES:
        im = img if s == imsize else img.resize((s, s), Image.BILINEAR)
        x = np.asarray(im, np.float32) / np.float32(255.0)  # ToTensor
        out[s] = (x - np.float32(0.5)) / np.float32(0.5)  # Normalize(0.5, 0.5)
    return out


def _scaled(w, h):
    size = int(256 * 76 / 64)
    return (size, int(size * h / w)) if w < h else (int(size * w / h), size)


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub")
    raw = make_cub_photos(str(root))
    path = tfds_builders.prepare("birds", str(root / "tfds"), raw, captions_per_image=2, workers=2)
    return raw, path


def test_birds_records_keep_the_jpeg_bytes_and_load_as_the_original(birds):
    raw, path = birds
    block = lambda images: pipeline._HostBlock(images, 0, 1, SIZES, random_crop=True)  # noqa: E731
    for split, keys in (("train", TRAIN), ("test", TEST)):
        index = pipeline._RecordIndex(path, split, split)
        images = pipeline._ImageRecords(
            tfds_builders.tfds.builder_from_directory(path).as_data_source(split)
        )
        assert [index[i]["key"].decode() for i in range(len(index))] == keys
        for i, key in enumerate(keys):
            file = os.path.join(raw, "CUB_200_2011", "images", key + ".jpg")
            ((data, crop),) = images.read([i])
            w, h, mode, bbox = BIRDS[key]
            if mode == "CMYK":  # re-encoded losslessly: a PNG of load_rgb's pixels
                assert data[:8] == b"\x89PNG\r\n\x1a\n"
            else:
                assert data == open(file, "rb").read()  # the file, byte for byte
            assert crop.tolist() == list(image_files.bbox_crop_box(bbox, w, h))
            sw, sh = _scaled(crop[2] - crop[0], crop[3] - crop[1])
            for top, left, flip in ((0, 0, False), (sh - 256, sw - 256, True), (7, 3, True)):
                batch = dict(
                    index=np.array([i]),
                    crop_top=np.array([top]),
                    crop_left=np.array([left]),
                    crop_flip=np.array([flip]),
                )
                got = block(images).map(batch)
                want = original_get_imgs(file, bbox, top, left, flip)
                for s in SIZES:
                    np.testing.assert_array_equal(got[f"image_{s}"][0], want[s], err_msg=key)


def test_birds_loader_batches_are_the_original_pixels(birds):
    """Through make_loader (centre crop, no flip): the original's pixels, whole batches."""
    raw, path = birds
    ld = pipeline.make_loader(
        path, "train", global_batch_size=4, image_sizes=SIZES, words_num=6, seed=0,
        shuffle=False, num_epochs=1, random_crop=False, random_flip=False,
        shard_index=0, shard_count=1,
    )  # fmt: skip
    (batch,) = list(ld)
    for b, key in enumerate(batch["keys"]):
        img = Image.open(os.path.join(raw, "CUB_200_2011", "images", key + ".jpg")).convert("RGB")
        img = img.crop(image_files.bbox_crop_box(BIRDS[key][3], *img.size))
        w, h = img.size
        if min(w, h) != 256:
            img = img.resize((256, int(256 * h / w)) if w < h else (int(256 * w / h), 256), 2)
        w, h = img.size
        top, left = int(round((h - 256) / 2)), int(round((w - 256) / 2))
        want = np.asarray(img.crop((left, top, left + 256, top + 256)), np.float32) / 255
        np.testing.assert_array_equal(batch["image_256"][b], (want - 0.5) / 0.5)


def test_records_need_no_more_disk_than_the_jpegs(birds):
    raw, path = birds
    jpegs = sum(
        os.path.getsize(os.path.join(raw, "CUB_200_2011", "images", k + ".jpg"))
        for k, v in BIRDS.items()
        if v[2] != "CMYK"
    )
    with (
        np.load(os.path.join(path, "index-train.npz")) as a,
        np.load(os.path.join(path, "index-test.npz")) as b,
    ):
        stored = np.concatenate([a["image_bytes"], b["image_bytes"]])
    kept = [k for k in TRAIN + TEST if BIRDS[k][2] != "CMYK"]
    order = TRAIN + TEST
    assert sum(int(stored[order.index(k)]) for k in kept) == jpegs


@pytest.mark.parametrize(
    "mode,fmt,kept",
    [
        ("RGB", "JPEG", True),
        ("L", "JPEG", True),
        ("RGB", "PNG", True),
        ("CMYK", "JPEG", False),
        ("P", "PNG", False),
        ("RGBA", "PNG", False),
        ("I;16", "PNG", False),
        ("RGB", "WEBP", False),
    ],
)
def test_stored_image_keeps_or_reencodes_losslessly(tmp_path, mode, fmt, kept):
    img = photos.photo_crop(np.random.default_rng(1), 40, 30)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L"), np.uint16) * 257)
    else:
        img = img.convert(mode)
    path = str(tmp_path / f"x.{fmt.lower()}")
    img.save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    stored = image_files.stored_image(image_files.ImageTask(path))
    assert stored.reencoded is not kept and stored.crop == (0, 0, 40, 30)
    if kept:
        assert stored.data == open(path, "rb").read()
    # whatever is stored, the loader's decode gives load_rgb's pixels
    got = np.asarray(image_files.decode_stored(stored.data, stored.crop))
    np.testing.assert_array_equal(got, image_files.load_rgb(path))


def test_exif_rotation_is_applied_for_custom_folders_only(tmp_path):
    img = photos.photo_crop(np.random.default_rng(2), 48, 32)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    path = str(tmp_path / "r.jpg")
    img.save(path, format="JPEG", exif=exif)
    as_stored = image_files.stored_image(image_files.ImageTask(path))
    assert not as_stored.reencoded and as_stored.crop == (0, 0, 48, 32)  # CUB/COCO: as stored
    upright = image_files.stored_image(image_files.ImageTask(path, exif_transpose=True))
    assert upright.reencoded and upright.crop == (0, 0, 32, 48)
    np.testing.assert_array_equal(
        np.asarray(image_files.decode_stored(upright.data, upright.crop)),
        image_files.load_rgb(path, exif_transpose=True),
    )


def test_workers_give_the_same_records_in_order_and_the_same_errors(tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for i in range(12):
        p = str(tmp_path / f"{i}.jpg")
        with open(p, "wb") as f:
            data = photos.photo_jpeg(rng, 64, 48)
            f.write(data[: len(data) // 2] if i == 7 else data)  # 7: truncated
        paths.append(p)
    tasks = [
        image_files.ImageTask(p, bbox=(4, 4, 20, 10) if i % 3 else None)
        for i, p in enumerate(paths)
    ]
    serial = list(image_files.read_stored_images(tasks, workers=0))
    parallel = list(image_files.read_stored_images(tasks, workers=2, chunksize=2))
    assert isinstance(serial[7], DataError) and isinstance(parallel[7], DataError)
    assert str(serial[7]) == str(parallel[7]) and "7.jpg: unreadable image" in str(serial[7])
    del serial[7], parallel[7]
    assert serial == parallel
    # through a source: the message names the file and the fix, or the image is skipped
    raw = make_cub_photos(str(tmp_path / "cub"))
    bad = os.path.join(raw, "CUB_200_2011", "images", TRAIN[1] + ".jpg")
    with open(bad, "r+b") as f:
        f.truncate(300)
    with pytest.raises(DataError, match=r"Alba_2\.jpg: unreadable image.*skip_bad_images"):
        list(CUBSource(raw, captions_per_image=2).stored_examples("train", workers=2))
    src = CUBSource(raw, captions_per_image=2, skip_bad_images=True)
    keys = [e.key for e in src.stored_examples("train", workers=2)]
    assert keys == [TRAIN[0], *TRAIN[2:]] and src.skipped_images == 1


def same_records(a: str, b: str) -> None:
    """Two prepared directories hold the same records and index (decoded: the files' bytes may
    differ between processes, protobuf writes map entries in a per-process hash order)."""
    for split in ("train", "test"):
        ra, rb = (
            tfds_builders.tfds.builder_from_directory(p).as_data_source(split) for p in (a, b)
        )
        assert len(ra) == len(rb)
        for i in range(len(ra)):
            x, y = ra[i], rb[i]
            assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x), (split, i)
        name = f"index-{split}.npz"
        with np.load(os.path.join(a, name)) as x, np.load(os.path.join(b, name)) as y:
            assert x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)


def test_serial_and_parallel_preparation_write_the_same_records(birds, tmp_path):
    raw, path = birds
    serial = tfds_builders.prepare("birds", str(tmp_path), raw, captions_per_image=2, workers=0)
    same_records(path, serial)


def test_old_format_directory_is_refused_with_the_fix(birds, tmp_path):
    _, path = birds
    old = tmp_path / "attngan_birds" / "1.0.0"
    old.mkdir(parents=True)
    for name in ("dataset_info.json", "vocab.json"):
        (old / name).write_bytes(open(os.path.join(path, name), "rb").read())
    (old / "metadata.json").write_text('{"dataset": "birds", "n_words": 9}')
    with pytest.raises(tfds_builders.OldFormatError, match=r"older attngan-jax.*prepare"):
        pipeline.make_loader(str(old), "train", global_batch_size=2, shard_index=0, shard_count=1)


def test_decode_stored_equals_pil_open_convert_crop():
    data = photos.photo_jpeg(np.random.default_rng(4), 80, 60)
    want = Image.open(io.BytesIO(data)).convert("RGB").crop((5, 6, 70, 50))
    np.testing.assert_array_equal(
        np.asarray(image_files.decode_stored(data, (5, 6, 70, 50))), np.asarray(want)
    )


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (the prepare run and its workers)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_killed_parallel_preparation_leaves_no_worker_and_reruns(birds, tmp_path):
    import signal
    import subprocess
    import time
    import uuid

    raw, path = birds
    marker = f"ATTNGAN_TEST_MARK={uuid.uuid4().hex}"
    env = dict(os.environ, ATTNGAN_TEST_MARK=marker.split("=")[1], JAX_PLATFORMS="cpu")
    cmd = [
        sys.executable, "-m", "attngan_jax.data.prepare", "--dataset=birds",
        f"--manual_dir={raw}", f"--data_dir={tmp_path}", "--workers=2",
        '--source_kwargs={"captions_per_image": 2}',
    ]  # fmt: skip
    run = lambda **e: subprocess.run(  # noqa: E731
        cmd, env={**env, **e}, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    killed = run(ATTNGAN_CRASH_AT="prepare:train:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert any(n.startswith("incomplete.") for n in os.listdir(tmp_path / "attngan_birds"))
    deadline = time.time() + 30
    while _processes_with(marker) and time.time() < deadline:
        time.sleep(0.2)  # the workers see their task pipe close and exit
    assert _processes_with(marker) == []
    done = run()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "img/s" in done.stderr  # the progress bar: rate and time left
    assert os.listdir(tmp_path / "attngan_birds") == [tfds_builders.VERSION]
    same_records(path, done.stdout.strip().splitlines()[-1])


def test_config_names_an_old_format_dataset(tmp_path):
    import ml_collections as mlc

    from attngan_jax import config_lib

    old = tmp_path / "attngan_birds" / "1.0.0"
    old.mkdir(parents=True)
    (old / "dataset_info.json").write_text("{}")
    (old / "vocab.json").write_text("{}")
    d = mlc.ConfigDict({"name": "birds", "data_dir": str(tmp_path), "manual_dir": ""})
    with pytest.raises(ValueError, match=r"older record format.*1\.0\.0.*manual_dir"):
        config_lib._validate_data_dirs(d)
