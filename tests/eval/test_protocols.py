"""eval.py --protocol: presets, the fixed R-precision list, and what the metrics JSON records."""

import json
import os

import numpy as np
import pytest
from eval_fixtures import make_model_dir, random_inception_npz

from attngan_jax.data import pipeline, tfds_builders
from attngan_jax.data.vocab import Vocabulary
from attngan_jax.errors import InputError
from attngan_jax.eval import evaluators, fixed_captions, protocols, sampling
from attngan_jax.metrics import fid as fid_lib
from attngan_jax.metrics import r_precision


def _caps(records=30, classes=4, seed=0):
    """A split's captions as ``pipeline.split_captions`` returns them (random, 1-4 per record)."""
    rng = np.random.default_rng(seed)
    num_caps = rng.integers(1, 5, records)
    cap_lens = rng.integers(2, 9, int(num_caps.sum()))
    caps = {"num_caps": num_caps, "cap_lens": cap_lens, "class_id": np.arange(records) % classes,
            "tokens": rng.integers(1, 50, int(cap_lens.sum()))}  # fmt: skip
    caps["cap_start"] = np.concatenate([[0], np.cumsum(num_caps)])
    caps["tok_start"] = np.concatenate([[0], np.cumsum(cap_lens)])
    return caps


def test_presets_and_recipes_are_complete():
    assert list(protocols.PRESETS)[:1] == ["default"] and protocols.get("") is protocols.get(None)
    with pytest.raises(InputError, match="--protocol=nope: use one of default, attngan_paper"):
        protocols.get("nope")
    for name, p in protocols.PRESETS.items():
        rec = json.loads(json.dumps(p.recipe("birds")))  # JSON-serialisable, whole
        assert rec["name"] == name and rec["columns"] and rec["metrics"]
        if p.fid:
            assert {"weights", "pipeline", "batch_size", "drop_last"} <= set(rec["fid"])
            assert {"quantise", "pil_resize", "scale", "float_resize"} <= set(
                rec["fid"]["pipeline"]
            )
    dm = protocols.get("dmgan_pytorch_fid")
    assert (dm.num_images, dm.fid.batch_size, dm.fid.drop_last) == (30000, 50, True)
    assert dm.fid.pipeline.describe()["quantise"].startswith("((x + 1) * 127.5).astype(uint8)")
    df = protocols.get("dfgan")
    assert (df.passes, df.batch_size, df.pass_drop_last) == (10, 32, True)
    assert (df.truncation, df.truncation_bound, df.fid.pipeline.quantise) == (0.88, 2.0, "none")
    assert protocols.get("attngan_paper").recipe("shapes")["is"].startswith("no published IS")


def test_dmgan_fold_quirk_needs_two_per_fold():
    with pytest.raises(ValueError, match="need at least 20"):
        r_precision.fold_statistics(np.ones(12), folds=10, dmgan_fold_quirk=True)


def test_dfgan_truncated_noise():
    z, _ = sampling.sample_noise(0, np.arange(400), 100, 4, truncation=0.88, truncation_bound=2.0)
    z = np.asarray(z)
    assert np.abs(z).max() <= 0.88 * 2.0 + 1e-6 and np.abs(z).max() > 0.88 * 1.9
    assert z.std() == pytest.approx(0.88 * 0.8796, rel=0.02)  # std of truncnorm(-2, 2) = 0.8796
    z_clip, _ = sampling.sample_noise(0, np.arange(400), 100, 4, truncation=0.88)
    assert np.abs(np.asarray(z_clip)).max() <= 0.88  # the old meaning is unchanged


def test_fixed_list_is_deterministic_and_fixed(tmp_path):
    caps = _caps()
    a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    fixed_captions.save(fixed_captions.build(caps, 95, seed=7, per_image_class=False), a)
    fixed_captions.save(fixed_captions.build(caps, 95, seed=7, per_image_class=False), b)
    assert open(a, "rb").read() == open(b, "rb").read()  # same inputs, same bytes
    lst = fixed_captions.load(a, caps)
    assert lst.mis_record.shape == (95, 99) and len(lst) == 95
    np.testing.assert_array_equal(lst.query_record, np.arange(95) % 30)
    cls = caps["class_id"]
    assert not np.any(cls[lst.mis_record] == cls[lst.query_record][:, None])  # other classes
    assert np.all(lst.mis_caption < caps["num_caps"][lst.mis_record])
    # every record's captions are visited once before any repeats (passes take the next one)
    for r in range(30):
        k = int(caps["num_caps"][r])
        seen = lst.query_caption[lst.query_record == r][:k]
        assert len(set(seen.tolist())) == len(seen) and seen.max() < k  # distinct captions
    q, m = lst.global_ids(caps)
    assert q.shape == (95,) and m.max() < len(caps["cap_lens"])
    other = fixed_captions.build(caps, 95, seed=8, per_image_class=False)
    assert not np.array_equal(other.mis_record, lst.mis_record)
    # load_or_create reads an existing list instead of drawing again
    again = fixed_captions.load_or_create(a, caps, 95, seed=123, per_image_class=True)
    np.testing.assert_array_equal(again.mis_record, lst.mis_record)
    with pytest.raises(InputError, match="drawn from other captions"):
        fixed_captions.load(a, _caps(seed=1))
    np.savez(str(tmp_path / "junk.npz"), x=np.zeros(3))
    with pytest.raises(InputError, match="not a fixed R-precision list"):
        fixed_captions.load(str(tmp_path / "junk.npz"))
    ids = fixed_captions.caption_ids(caps, q[:3], 12)
    assert ids.shape == (3, 12) and np.all((ids > 0).sum(1) == caps["cap_lens"][q[:3]])


def _fast_frechet(mu1, sigma1, mu2, sigma2):
    w, v = np.linalg.eigh(sigma1)
    s1h = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr = np.sqrt(np.clip(np.linalg.eigvalsh(s1h @ sigma2 @ s1h), 0, None)).sum()
    d = mu1 - mu2
    return float(d @ d + np.trace(sigma1) + np.trace(sigma2) - 2 * tr)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocols")
    data = tfds_builders.prepare(
        "shapes", str(root / "data"), num_train=4, num_test=20, image_size=64, captions_per_image=2
    )
    vocab = Vocabulary.load(pipeline.vocabulary_path(data))
    model = make_model_dir(str(root / "runs" / "a"), vocab)
    judge = make_model_dir(str(root / "runs" / "judge"), vocab, seed=9)
    return root, data, model, judge


def test_fixed_r_precision_protocol(shapes, tmp_path):
    root, data, model, judge = shapes
    rp_list = str(tmp_path / "rp.npz")
    kw = dict(data_dir=data, num_images=30, batch_size=10, seed=2, protocol="fixed_r_precision")
    out = evaluators.evaluate(model, damsm=judge, rp_list=rp_list, **kw)
    rec = out["protocol"]
    assert rec["name"] == "fixed_r_precision" and out["metrics"].keys() == {
        "r_precision", "r_precision_std", "r_precision_candidates"}  # fmt: skip
    info = out["r_precision"]
    assert info["mode"] == "fixed_list" and info["damsm"] == os.path.abspath(judge)
    assert info["list_sha256"] == fixed_captions.file_digest(rp_list)
    assert info["list_meta"]["num_queries"] == 30 and info["dmgan_fold_quirk"] is True
    assert 0.0 <= out["metrics"]["r_precision"] <= 1.0 and out["num_images"] == 30
    assert rec["run"]["captions"].startswith("the fixed list")
    again = evaluators.evaluate(model, damsm=judge, rp_list=rp_list, **kw)
    assert again["metrics"] == out["metrics"]  # same list, same judge, same seed
    other = str(tmp_path / "not_drawn.npz")
    skipped = evaluators.evaluate(model, rp_list=other, **kw)  # no named DAMSM: no own fallback
    assert "--damsm" in skipped["skipped"]["r_precision"] and skipped["metrics"] == {}
    assert not os.path.exists(other)


@pytest.mark.slow  # an Inception-v3 compile and ~50 images through it (~45 s of CPU)
def test_dfgan_protocol_records_recipe_and_deviations(shapes, tmp_path, monkeypatch):
    root, data, model, _ = shapes
    monkeypatch.setattr(fid_lib, "frechet_distance", _fast_frechet)
    inc = random_inception_npz(str(tmp_path / "tv.npz"))
    # 20 test records in batches of 6: a pass yields 18 images; 24 images = pass 0 + 6 of pass 1
    out = evaluators.evaluate(model, data_dir=data, num_images=24, batch_size=6, seed=1,
                              inception=inc, protocol="dfgan")  # fmt: skip
    rec = out["protocol"]
    assert rec["name"] == "dfgan" and rec["passes"] == 10 and rec["truncation"] == 0.88
    assert rec["deviations"] == ["batch_size 6 (preset 32)", "num_images 24 (preset 180)"]
    assert rec["run"]["captions"] == "loader pass p uses seed + p"
    net = out["fid_inception"]
    assert net["pipeline"]["quantise"] == "none (float images)" and net["images_used"] == 24
    assert net["kind"] == "torchvision" and out["skipped"] == {} and out["metrics"]["fid"] > 0
    assert "none-nopil-imagenet_on_unit-half_pixel" in out["fid_reference"]
    stored = json.load(open(evaluators.metrics_path(model, "ema")))
    assert stored["protocol"]["fid"]["source"].startswith("tobran/DF-GAN")
    # a preset refuses weights of another kind, naming what it needs
    fid_w = random_inception_npz(str(tmp_path / "fid.npz"), num_classes=1008, fid_variant=True)
    with pytest.raises(InputError, match="needs 'torchvision' Inception weights"):
        evaluators.evaluate(model, data_dir=data, num_images=6, batch_size=6, inception=fid_w,
                            protocol="dmgan_pytorch_fid")  # fmt: skip
