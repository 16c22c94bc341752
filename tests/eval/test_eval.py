"""eval.py / eval_lib: sampling to PNG files, metrics JSON (IS, FID, R-precision, fidelity), --all."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
from eval_fixtures import make_model_dir, random_inception_npz  # noqa: E402
from PIL import Image

from attngan_jax import model_dir  # noqa: E402
from attngan_jax.data import pipeline, tfds_builders  # noqa: E402
from attngan_jax.data.text import DataError  # noqa: E402
from attngan_jax.data.vocab import Vocabulary  # noqa: E402
from attngan_jax.eval import evaluators, sampling  # noqa: E402
from attngan_jax.eval import run as eval_run  # noqa: E402
from attngan_jax.metrics import fid as fid_lib  # noqa: E402
from attngan_jax.metrics import networks  # noqa: E402


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A prepared shapes dataset (20 test images) and a tiny model directory on its vocabulary."""
    root = tmp_path_factory.mktemp("eval")
    data = tfds_builders.prepare(
        "shapes", str(root / "data"), num_train=4, num_test=20, image_size=64, captions_per_image=2
    )
    vocab = Vocabulary.load(pipeline.vocabulary_path(data))
    model = make_model_dir(str(root / "runs" / "a"), vocab)
    return root, data, model, vocab


def test_sample_files_names_and_determinism(shapes, tmp_path, caplog):
    root, _, model, vocab = shapes
    caps = tmp_path / "caps.txt"
    caps.write_text("a red circle on the left\n\n  \na blue zebra square\n")
    captions = eval_run.read_captions(str(caps))
    assert captions == ["a red circle on the left", "a blue zebra square"]  # blank lines skipped
    demo = root / "demo"  # a demo workdir: the model directory is its attngan/ subdir
    if not demo.exists():
        shutil.copytree(model, demo / "attngan")
    with caplog.at_level(logging.WARNING):
        paths = eval_run.sample(str(demo), captions, str(tmp_path / "out"), num_samples=2,
                                seed=3, batch_size=3)  # fmt: skip
    assert "zebra" in caplog.text  # the unknown word is named
    names = sorted(os.listdir(tmp_path / "out"))
    want = sorted(f"{i:04d}_{j:02d}_{s}.png" for i in range(2) for j in range(2)
                  for s in ("64", "128", "attention"))  # fmt: skip
    assert names == want and len(paths) == len(want)
    assert np.asarray(Image.open(tmp_path / "out" / "0001_01_128.png")).shape == (128, 128, 3)
    assert np.asarray(Image.open(tmp_path / "out" / "0000_00_64.png")).shape == (64, 64, 3)
    # a caption's images depend on (seed, caption, sample) only, not on the batch or other captions
    a = np.asarray(Image.open(tmp_path / "out" / "0000_01_128.png"))
    eval_run.sample(model, captions, str(tmp_path / "again"), num_samples=2, seed=3, batch_size=4)
    a2 = np.asarray(Image.open(tmp_path / "again" / "0000_01_128.png"))
    b = np.asarray(Image.open(tmp_path / "again" / "0000_00_128.png"))
    diff = lambda x, y: np.abs(x.astype(int) - y.astype(int))  # noqa: E731
    # same noise: equal up to float32 rounding of batch-size dependent conv kernels (a few levels)
    assert diff(a, a2).max() <= 4 and diff(a, a2).mean() < 0.5
    assert diff(a, b).mean() > 5 * diff(a, a2).mean()  # another sample of the caption differs


def test_caption_without_known_word_is_an_error_naming_it(shapes, tmp_path):
    _, _, model, _ = shapes
    with pytest.raises(DataError, match="qwerty zxcv"):
        eval_run.sample(model, ["a red circle", "qwerty zxcv"], str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()  # fails before writing anything
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        model_dir.resolve(str(tmp_path))


def test_noise_is_per_item():
    z1, e1 = sampling.sample_noise(0, np.arange(6), 4, 3)
    z2, e2 = sampling.sample_noise(0, np.arange(4, 6), 4, 3)
    np.testing.assert_array_equal(np.asarray(z1)[4:], z2)
    np.testing.assert_array_equal(np.asarray(e1)[4:], e2)
    zt, _ = sampling.sample_noise(0, np.arange(50), 4, 3, truncation=0.5)
    assert np.abs(np.asarray(zt)).max() <= 0.5


def test_detect_kind():
    assert networks.detect_kind({"blocks.0.0.conv.weight": 0}) == "fid"
    assert networks.detect_kind({"fc.weight": np.zeros((1008, 2))}) == "fid"
    assert networks.detect_kind({"fc.weight": np.zeros((1000, 2))}) == "torchvision"
    assert networks.detect_kind({"fc.weight": np.zeros((51, 2))}) == "stackgan"
    with pytest.raises(ValueError, match="7 classes"):
        networks.detect_kind({"fc.weight": np.zeros((7, 2))})


def _fast_frechet(mu1, sigma1, mu2, sigma2):
    """Same distance via symmetric eigendecompositions (scipy's sqrtm of a rank-deficient 2048x2048
    product takes ~30 s on 2 CPU cores; frechet_distance itself is tested in test_metrics)."""
    w, v = np.linalg.eigh(sigma1)
    s1h = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # sigma1^(1/2)
    tr = np.sqrt(np.clip(np.linalg.eigvalsh(s1h @ sigma2 @ s1h), 0, None)).sum()
    d = mu1 - mu2
    return float(d @ d + np.trace(sigma1) + np.trace(sigma2) - 2 * tr)


def test_fast_frechet_matches():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((50, 8)), rng.standard_normal((40, 8)) + 0.3
    args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert _fast_frechet(*args) == pytest.approx(fid_lib.frechet_distance(*args))


def test_metrics_json_and_all(shapes, tmp_path_factory, monkeypatch):
    root, data, model, vocab = shapes
    monkeypatch.setattr(fid_lib, "frechet_distance", _fast_frechet)
    inc = random_inception_npz(str(tmp_path_factory.mktemp("w") / "inception_v3.npz"))
    out = evaluators.evaluate(model, data_dir=data, num_images=20, batch_size=10, seed=1,
                                inception=inc)  # fmt: skip
    path = evaluators.metrics_path(model, "ema")
    assert json.load(open(path)) == json.loads(json.dumps(out, default=float))
    m = out["metrics"]
    assert out["num_images"] == 20 and out["skipped"] == {}
    assert out["inception"]["kind"] == "torchvision" and "PyTorch FID" in out["fid_column"]
    assert 1.0 <= m["inception_score"] < 1000 and np.isfinite(m["inception_score_std"])
    assert m["fid"] > 0 and os.path.exists(out["fid_reference"])  # reference stats cached
    assert 0.0 <= m["r_precision"] <= 1.0 and m["r_precision_candidates"] == 20
    cf = m["caption_fidelity"]
    assert cf["n"] == 20 and sum(cf[f"n_{c}"] for c in ("colour_single", "position")) > 0
    assert os.listdir(os.path.join(model, "eval", "tensorboard"))
    # --all: "a" is scored already (skipped), "b" (a demo workdir) is scored, "c" is not a model
    make_model_dir(str(root / "runs" / "b" / "attngan"), vocab, seed=5)
    os.makedirs(root / "runs" / "c")
    res = eval_run.evaluate_all(str(root / "runs"), data_dir=os.path.dirname(os.path.dirname(data)),
                                num_images=12, batch_size=6)  # fmt: skip
    assert sorted(res) == [str(root / "runs" / "a"), str(root / "runs" / "b")]
    assert res[str(root / "runs" / "a")] is None
    rb = res[str(root / "runs" / "b")]
    assert set(rb["skipped"]) == {"is", "fid"} and "--inception" in rb["skipped"]["is"]
    assert rb["num_images"] == 12 and "r_precision" in rb["metrics"]
    assert os.path.exists(root / "runs" / "b" / "attngan" / "eval" / "metrics_ema.json")
    assert eval_run.format_metrics(rb).count("skipped") == 2


def test_load_model_sees_a_directory_exported_again(tmp_path):
    """The cache is keyed by contents: re-exporting into the same folder gives the new weights."""
    import jax

    from attngan_jax.data.shapes import IXTOWORD

    d = str(tmp_path / "m")
    vocab = Vocabulary(list(IXTOWORD))
    make_model_dir(d, vocab, seed=0)
    first = sampling.load_model(d)
    assert sampling.load_model(d) is first  # unchanged: cached
    make_model_dir(d, vocab, seed=5)
    second = sampling.load_model(d)
    a, b = jax.tree_util.tree_leaves(first.generator), jax.tree_util.tree_leaves(second.generator)
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))


def test_generate_without_a_directory_uses_the_shipped_model():
    out = sampling.generate(None, ["a red circle"], seed=0)
    ref = sampling.generate(model_dir.SHIPPED_MODEL, ["a red circle"], seed=0)
    sizes = list(sampling.load_model(model_dir.SHIPPED_MODEL).spec.image_sizes)
    assert [x.shape[-2] for x in out["images"]] == sizes
    np.testing.assert_array_equal(out["images"][-1], ref["images"][-1])


def test_evaluators_on_a_model_in_memory_equal_the_model_directory(shapes):
    """``run`` on a model made from arrays (as from a training state) gives the directory's figures;
    ``stages="all"`` adds each stage's R-precision, the final one equal to the plain figure."""
    from attngan_jax.eval.evaluators.base import Context

    _, data, model, vocab = shapes
    loaded = sampling.load_model(model)
    state_like = sampling.local_model(loaded.spec, vocab, loaded.generator, loaded.encoders)
    want = evaluators.evaluate(model, data_dir=data, num_images=12, batch_size=4, seed=2,
                               metrics=["r_precision", "caption_fidelity"])  # fmt: skip
    ctx = Context(
        model=state_like, model_dir=model, data_path=data, dataset="shapes", num_images=12,
        batch_size=4, seed=2, inception=None, inception_kind="auto", fid_inception=None,
        fid_reference="test", stages="all",
    )  # fmt: skip
    got = evaluators.run(ctx, ["r_precision", "caption_fidelity"], every_process=True)
    m = got["metrics"]
    assert m["caption_fidelity"] == want["metrics"]["caption_fidelity"]
    assert m["r_precision"] == pytest.approx(want["metrics"]["r_precision"], abs=1e-6)
    per_stage = m["r_precision_per_stage"]
    assert sorted(per_stage) == ["128", "64"]
    assert per_stage["128"]["r_precision"] == m["r_precision"]
    assert 0.0 <= per_stage["64"]["r_precision"] <= 1.0


def test_evaluator_shares_add_up_to_one_process():
    """Two shares of the rows, gathered, give what one accumulator of every row gives."""
    from attngan_jax.eval.evaluators.caption_fidelity import _Counts
    from attngan_jax.metrics.inception_score import InceptionScoreAccumulator

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((20, 7))
    whole = InceptionScoreAccumulator(20, 7, splits=4, from_logits=True)
    whole.update(logits)
    a = InceptionScoreAccumulator(20, 7, splits=4, from_logits=True)
    b = InceptionScoreAccumulator(20, 7, splits=4, from_logits=True)
    for k in range(0, 20, 4):  # batches of 4 in blocks of 2: rows k, k+1 to a; k+2, k+3 to b
        a.update(logits[k : k + 2], start=k)
        b.update(logits[k + 2 : k + 4], start=k + 2)
    a.merge(b)
    np.testing.assert_allclose(a.result(), whole.result(), rtol=1e-12)
    with pytest.raises(ValueError, match="more rows"):
        a.update(logits[:4], start=18)
    c1, c2 = _Counts(), _Counts()
    c1.hits["position"], c1.counts["position"], c1.n = 1, 2, 3
    c2.hits["position"], c2.counts["position"], c2.n = 2, 2, 4
    c1.set_total([c1.state(), c2.state()])
    assert c1.result()["position"] == 0.75 and c1.result()["n"] == 7


def test_demo_figure_script_draws_the_test_captions(shapes, tmp_path):
    """scripts/demo_figure.py: a grid of (image, caption, verdicts) cells for the test captions."""
    import importlib.util

    from paths import REPO

    _, data, model, _ = shapes
    spec = importlib.util.spec_from_file_location(
        "demo_figure", os.path.join(REPO, "scripts", "demo_figure.py")
    )
    demo_figure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_figure)
    captions = demo_figure.test_captions(data, 2, 3)
    assert len(captions) == 3 and all(" " in c for c in captions)
    out = str(tmp_path / "fig.png")
    demo_figure.main([f"--model={model}", f"--data={data}", "--num=3", "--cols=2", f"--out={out}"])
    side = 4 * max(json.load(open(os.path.join(model, "model.json")))["image_sizes"])
    assert Image.open(out).size == (2 * (side + 200), 2 * side)
    with pytest.raises(SystemExit, match="only .* test captions name 2"):
        demo_figure.test_captions(data, 2, 1000)
