"""TFDS ArrayRecord builders + the grain input pipeline, on a tiny fake source."""

import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from attngan_jax.data import pipeline, tfds_builders
from attngan_jax.data.base import Example
from attngan_jax.data.vocab import Vocabulary

SIZES = (16, 32)  # crop 32, resized shorter side int(32 * 76 / 64) = 38
WORDS = 6
N_TRAIN = 12


class FakeSource:
    """12 train / 3 test images of assorted sizes, 2-3 unique captions each (some > WORDS words)."""

    name = "fake"

    def __init__(self, fail_at: int | None = None):
        self.fail_at = fail_at

    def vocabulary(self) -> Vocabulary:
        return Vocabulary(["<end>"] + [f"w{i}" for i in range(1, 400)])

    def splits(self) -> list[str]:
        return ["train", "test"]

    def num_examples(self, split: str) -> int:
        return N_TRAIN if split == "train" else 3

    def example(self, split: str, i: int) -> Example:
        r = np.random.default_rng((split == "test", i))
        # image 0: shorter side already 38 (no resize), 50 high -> centre crop rows 9:41, cols 3:35
        h, w = (50, 38) if i == 0 else r.integers(30, 60, size=2)
        n_caps = 2 + i % 2
        lens = [1 + (i + 3 * j) % 11 for j in range(n_caps)]
        caps = [[1 + (100 * j + 7 * i + t) % 399 for t in range(n)] for j, n in enumerate(lens)]
        image = r.integers(0, 256, (h, w, 3), dtype=np.uint8)
        return Example(f"{split}/{i:03d}", image, caps, i % 4)

    def examples(self, split: str) -> Iterator[Example]:
        for i in range(self.num_examples(split)):
            if self.fail_at is not None and i == self.fail_at:
                raise RuntimeError("source failed mid-generation")
            yield self.example(split, i)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> str:
    return tfds_builders.prepare("fake", str(tmp_path_factory.mktemp("data")), source=FakeSource())


def loader(path: str, **kw):
    args = dict(
        global_batch_size=4, image_sizes=SIZES, words_num=WORDS, shard_index=0, shard_count=1
    )
    args.update(kw)
    return pipeline.make_loader(path, "train", **args)


def take(ld, n: int) -> list[dict]:
    it = iter(ld)
    return [next(it) for _ in range(n)]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def expected_centre(image: np.ndarray) -> dict[int, np.ndarray]:
    """Independent reference for crop/flip off: PIL Scale(32) + CenterCrop(32) + Scale(16)."""
    img = Image.fromarray(image)
    w, h = img.size
    if min(w, h) != 32:
        img = img.resize((32, int(32 * h / w)) if w < h else (int(32 * w / h), 32), Image.BILINEAR)
    w, h = img.size
    top, left = int(round((h - 32) / 2)), int(round((w - 32) / 2))
    crop = img.crop((left, top, left + 32, top + 32))
    small = crop.resize((16, 16), Image.BILINEAR)
    return {32: np.asarray(crop) / 127.5 - 1.0, 16: np.asarray(small) / 127.5 - 1.0}


def test_records_round_trip(prepared):
    assert tfds_builders.is_prepared(prepared)
    assert Vocabulary.load(pipeline.vocabulary_path(prepared)) == FakeSource().vocabulary()
    assert pipeline.dataset_metadata(prepared) == {
        "dataset": "fake",
        "positional_captions": False,
        "n_words": 400,
        "format": tfds_builders.FORMAT,
    }
    src = tfds.builder_from_directory(prepared).as_data_source("train")
    index = pipeline._RecordIndex(prepared, "train", "fake/train")
    assert len(src) == len(index) == N_TRAIN
    for i in (0, 5, 11):
        rec, ex = src[i], FakeSource().example("train", i)
        assert rec["key"].decode() == ex.key and rec["class_id"] == ex.class_id
        image = np.asarray(Image.open(io.BytesIO(rec["image"])))
        np.testing.assert_array_equal(image, ex.image)  # drawn images: PNG, lossless
        assert rec["crop"].tolist() == [0, 0, ex.image.shape[1], ex.image.shape[0]]
        assert rec["cap_lens"].tolist() == [len(c) for c in ex.captions]
        assert rec["tokens"].tolist() == sum(ex.captions, [])
        meta = index[i]  # the same record without its image
        assert meta["key"].decode() == ex.key and meta["class_id"] == ex.class_id
        for k in ("crop", "cap_lens", "tokens"):
            np.testing.assert_array_equal(meta[k], rec[k])
    # preparing again reuses the dataset (a failing source would raise if it were read)
    data_dir = os.path.dirname(os.path.dirname(prepared))
    assert tfds_builders.prepare("fake", data_dir, source=FakeSource(fail_at=0)) == prepared


def test_interrupted_build_leaves_nothing_complete(tmp_path):
    with pytest.raises(RuntimeError, match="mid-generation"):
        tfds_builders.prepare("fake", str(tmp_path), source=FakeSource(fail_at=5))
    path = tfds_builders.dataset_dir(str(tmp_path), "fake")
    assert not os.path.exists(path) and not tfds_builders.is_prepared(path)
    leftovers = [f for _, _, files in os.walk(tmp_path) for f in files]
    assert leftovers == []  # no records, no dataset_info.json, no vocab.json anywhere
    with pytest.raises(FileNotFoundError, match="not a completely prepared"):
        loader(path)
    assert tfds_builders.prepare("fake", str(tmp_path), source=FakeSource()) == path
    assert tfds_builders.is_prepared(path)


def test_batch_shapes_ranges_and_captions(prepared):
    src, seen_caps, truncations = FakeSource(), set(), set()
    for batch in take(loader(prepared, seed=3), 9):  # 3 epochs
        assert batch["image_16"].shape == (4, 16, 16, 3) and batch["image_32"].shape == (
            4,
            32,
            32,
            3,
        )
        for s in SIZES:
            x = batch[f"image_{s}"]
            assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0 and np.ptp(x) > 1.0
        assert batch["captions"].shape == (4, WORDS) and batch["captions"].dtype == np.int32
        assert batch["cap_lens"].dtype == np.int32 and batch["class_ids"].dtype == np.int32
        assert batch["keys"].dtype.kind == "U"
        assert np.all(np.diff(batch["cap_lens"]) <= 0)  # sorted by length, descending
        for b in range(4):
            ex = src.example("train", int(batch["index"][b]))
            # every field was permuted together by the sort
            assert batch["keys"][b] == ex.key and batch["class_ids"][b] == ex.class_id
            n, cap = int(batch["cap_lens"][b]), batch["captions"][b].tolist()
            assert cap[n:] == [0] * (WORDS - n)
            # one of the image's captions, or an in-order subset of WORDS of its words
            j = (cap[0] - 1) // 100  # caption j uses the words 100 j + 1 .. 100 j + 88
            full = ex.captions[j]
            assert n == min(len(full), WORDS)
            if len(full) <= WORDS:
                assert cap[:n] == full
            else:
                pos = [full.index(w) for w in cap[:n]]
                assert pos == sorted(pos) and len(set(pos)) == n
                truncations.add((ex.key, tuple(pos)))
            seen_caps.add((ex.key, j))
    assert len(seen_caps) > N_TRAIN  # several captions of the same image get chosen
    assert len({k for k, _ in truncations}) < len(truncations)  # word dropping varies


def test_flip_and_crop_off_is_exact_and_flip_mirrors(prepared):
    src = FakeSource()
    off = take(loader(prepared, random_crop=False, random_flip=False, seed=1), 6)
    flip = take(loader(prepared, random_crop=False, random_flip=True, seed=2), 6)
    flips = []
    for batch, flip_on in [(b, False) for b in off] + [(b, True) for b in flip]:
        for b in range(4):
            want = expected_centre(src.example("train", int(batch["index"][b])).image)
            for s in SIZES:
                got = batch[f"image_{s}"][b]
                if not flip_on:
                    np.testing.assert_allclose(got, want[s], atol=1e-6)
                else:
                    flipped = np.allclose(got, want[s][:, ::-1], atol=1e-6)
                    assert flipped or np.allclose(got, want[s], atol=1e-6)
                    if s == 32:
                        flips.append(flipped)
    assert 0 < sum(flips) < len(flips)


def test_determinism_and_resume(prepared):
    a = take(loader(prepared, seed=7), 4)
    b = take(loader(prepared, seed=7), 4)
    c = take(loader(prepared, seed=8), 4)
    assert all(same(x, y) for x, y in zip(a, b))
    assert not any(same(x, y) for x, y in zip(a, c))
    # unshuffled: same records, but different per-example randomness for different seeds
    u0 = take(loader(prepared, seed=0, shuffle=False), 2)
    u1 = take(loader(prepared, seed=1, shuffle=False), 2)
    assert np.array_equal(np.sort(u0[0]["index"]), np.sort(u1[0]["index"]))
    assert not np.array_equal(u0[0]["image_32"], u1[0]["image_32"])

    it = iter(loader(prepared, seed=7))
    for _ in range(5):  # crosses an epoch boundary (12 records, batch 4)
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(3)]
    resumed = iter(loader(prepared, seed=7))
    resumed.set_state(state)
    assert all(same(x, next(resumed)) for x in expected)


@pytest.mark.parametrize("sizes", [SIZES, (8, 16, 32)])
def test_host_blocks_make_the_single_process_batch(prepared, sizes):
    """N hosts' blocks, in process order, are exactly the batches of one process (any shard count)."""
    kw = dict(global_batch_size=6, num_epochs=2, image_sizes=sizes)
    ref = take(loader(prepared, shard_index=0, shard_count=1, **kw), 4)
    for count in (2, 3):
        blocks = [
            take(loader(prepared, shard_index=i, shard_count=count, **kw), 4) for i in range(count)
        ]
        for step, want in enumerate(ref):
            got = {k: np.concatenate([b[step][k] for b in blocks]) for k in want}
            assert same(want, got), (count, step)
            assert all(len(b[step]["index"]) == 6 // count for b in blocks)
    # one epoch holds every record once
    ids = np.concatenate([b["index"] for b in ref[:2]]).tolist()
    assert sorted(ids) == list(range(N_TRAIN))


def test_host_block_resumes_from_its_state(prepared):
    kw = dict(global_batch_size=6, shard_index=1, shard_count=2, seed=3)
    it = iter(loader(prepared, **kw))
    next(it)
    state = it.get_state()
    want = next(it)
    resumed = iter(loader(prepared, **kw))
    resumed.set_state(state)
    assert same(want, next(resumed))


def test_batch_that_does_not_split_names_the_nearest_sizes(prepared):
    with pytest.raises(ValueError, match="nearest: 4 or 6"):
        loader(prepared, global_batch_size=5, shard_index=0, shard_count=2)


def test_worker_count_gives_same_batches(prepared):
    ref = take(loader(prepared, seed=5), 3)
    it = iter(loader(prepared, seed=5, worker_count=1))
    got = [next(it) for _ in range(3)]
    state = it.get_state()
    nxt = next(it)
    del it
    assert all(same(x, y) for x, y in zip(ref, got))
    resumed = iter(loader(prepared, seed=5, worker_count=1))  # grain checks the worker count
    resumed.set_state(state)
    assert same(nxt, next(resumed))
    del resumed


def test_cached_images_give_same_batches_and_are_read_once(prepared):
    """cache_images: three epochs read each record's image once and give the uncached batches."""
    kw = dict(seed=3, random_crop=False, random_flip=False)
    n = 3 * N_TRAIN // 4  # batches of 4: three epochs
    ref = take(loader(prepared, **kw), n)
    before = pipeline.image_read_stats()["records"]
    got = take(loader(prepared, cache_images=True, **kw), n)
    assert pipeline.image_read_stats()["records"] - before == N_TRAIN
    assert all(same(x, y) for x, y in zip(ref, got))
    with pytest.raises(ValueError, match="random_crop=False and random_flip=False"):
        loader(prepared, cache_images=True, random_crop=True, random_flip=False)


def test_read_threads_give_same_batches_and_resume_across(prepared):
    ref = take(loader(prepared, seed=5, read_threads=16), 3)
    it = iter(loader(prepared, seed=5, read_threads=0))
    got = [next(it) for _ in range(2)]
    state = it.get_state()
    assert all(same(x, y) for x, y in zip(ref, got))
    resumed = iter(loader(prepared, seed=5, read_threads=2))
    resumed.set_state(state)
    assert same(ref[2], next(resumed))


def test_loader_batches_as_global_arrays_on_four_devices(prepared):
    script = textwrap.dedent(
        f"""
        import attngan_jax, jax, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from attngan_jax.data import pipeline
        from attngan_jax.runtime import sharding
        assert jax.device_count() == 4, jax.devices()
        mesh = Mesh(np.array(jax.devices()), ("data",))
        kw = dict(global_batch_size=8, image_sizes={SIZES}, words_num={WORDS}, seed=4)
        host = iter(pipeline.make_loader({prepared!r}, "train", **kw))
        glob_it = iter(pipeline.make_loader({prepared!r}, "train", **kw))
        for _ in range(2):
            h, g = next(host), sharding.to_global(next(glob_it), mesh, "data", keep_host=True)
            assert g.keys() == h.keys()
            assert isinstance(g["keys"], np.ndarray) and (g["keys"] == h["keys"]).all()
            for k in h:
                if k == "keys":
                    continue
                assert isinstance(g[k], jax.Array) and g[k].shape == h[k].shape, k
                assert g[k].sharding.is_equivalent_to(NamedSharding(mesh, P("data")), g[k].ndim)
                assert len(g[k].addressable_shards) == 4
                for s in g[k].addressable_shards:
                    assert s.data.shape[0] == 2
                    np.testing.assert_array_equal(np.asarray(s.data), h[k][s.index])
                np.testing.assert_array_equal(np.asarray(g[k]), h[k])
        print("OK")
        """
    )
    env = dict(
        os.environ,
        XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
    )
    res = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-3000:]


def test_real_sources_cub_mini_tree_and_shapes(tmp_path):
    from test_data_sources import CUB_TRAIN, make_cub  # the colleagues' mini CUB tree

    from attngan_jax.data.original import CUBSource
    from attngan_jax.data.shapes import ShapesSource

    data_dir = str(tmp_path / "tfds")
    raw = make_cub(str(tmp_path / "raw"))
    birds = tfds_builders.prepare("birds", data_dir, raw, captions_per_image=2)
    cub = CUBSource(raw, captions_per_image=2)
    assert Vocabulary.load(pipeline.vocabulary_path(birds)) == cub.vocabulary()
    assert pipeline.dataset_metadata(birds)["positional_captions"] is False
    ex = {e.key: e for e in cub.examples("train")}
    ld = loader(birds, global_batch_size=2, random_crop=False, random_flip=False, num_epochs=1)
    (batch,) = take(ld, 1)
    assert sorted(batch["keys"].tolist()) == CUB_TRAIN
    for b, key in enumerate(batch["keys"]):
        n = int(batch["cap_lens"][b])
        assert batch["captions"][b, :n].tolist() in ex[key].captions
        want = expected_centre(ex[key].image)  # the bbox-cropped image
        np.testing.assert_allclose(batch["image_32"][b], want[32], atol=1e-6)

    kw = dict(num_train=6, num_test=2, image_size=32, captions_per_image=2)
    shapes = tfds_builders.prepare("shapes", data_dir, **kw)
    assert pipeline.dataset_metadata(shapes)["positional_captions"] is True
    src = list(ShapesSource(**kw).examples("train"))
    # defaults: no crop/flip for positional captions -> images independent of the seed
    a = take(loader(shapes, global_batch_size=2, shuffle=False, seed=0), 3)
    b = take(loader(shapes, global_batch_size=2, shuffle=False, seed=1), 3)
    for x, y in zip(a, b):
        order = [y["index"].tolist().index(i) for i in x["index"]]  # y's rows in x's order
        np.testing.assert_array_equal(x["image_32"], y["image_32"][order])
        for r, i in enumerate(x["index"]):
            want = expected_centre(src[i].image)[32]
            np.testing.assert_allclose(x["image_32"][r], want, atol=1e-6)
    with pytest.warns(UserWarning, match="captions name positions"):
        loader(shapes, random_flip=True)
