"""COCO and custom caption folders through the TFDS builder and the grain loader, end to end."""

import numpy as np
from test_data_sources import make_coco, make_custom  # tests/ is on sys.path (pytest rootdir)

from attngan_jax.data import pipeline, tfds_builders
from attngan_jax.data.vocab import Vocabulary


def _batch(path, split, n):
    ld = pipeline.make_loader(
        path, split, global_batch_size=n, image_sizes=(16, 32), words_num=6, seed=0,
        shuffle=False, num_epochs=1, shard_index=0, shard_count=1,
    )  # fmt: skip
    return next(iter(ld))


def test_coco_prepare_and_load(tmp_path):
    manual = make_coco(str(tmp_path))
    path = tfds_builders.prepare("coco", str(tmp_path / "prepared"), manual, captions_per_image=3)
    assert tfds_builders.is_prepared(path)
    b = _batch(path, "train", 1)
    assert b["image_32"].shape == (1, 32, 32, 3) and b["image_16"].shape == (1, 16, 16, 3)
    assert -1.0 <= b["image_32"].min() and b["image_32"].max() <= 1.0
    vocab = Vocabulary.load(pipeline.vocabulary_path(path))
    words = vocab.decode(b["captions"][0][: b["cap_lens"][0]])
    assert words in ("a cat", "a dog", "a cat on a mat")


def test_custom_folder_prepare_and_load(tmp_path):
    manual = make_custom(str(tmp_path))
    path = tfds_builders.prepare(
        "custom", str(tmp_path / "prepared"), manual, captions_per_image=2, test_fraction=0.0
    )
    b = _batch(path, "train", 4)
    assert b["image_32"].shape == (4, 32, 32, 3)
    assert sorted(b["keys"].tolist()) == ["cats/c1", "cats/c2", "dogs/d1", "dogs/sub/d2"]
    assert np.all(b["cap_lens"] >= 1)
