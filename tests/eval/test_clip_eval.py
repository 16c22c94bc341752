"""CLIP score and CLIP R-precision: equal to open_clip (torch) on a random tiny CLIP; eval path; skips."""

import json
import os
import types

import numpy as np
import pytest
from open_clip_ref import open_clip, random_clip

from attngan_jax.convert import clip as convert_clip
from attngan_jax.data.vocab import Vocabulary
from attngan_jax.eval import evaluators
from attngan_jax.eval.evaluators.base import Context, GeneratedBatch
from attngan_jax.eval.evaluators.clip_metrics import NO_CLIP, ClipRPrecision, ClipScore
from attngan_jax.metrics.r_precision import fold_statistics, sample_mismatched_indices
from attngan_jax.models import clip
from attngan_jax.models.clip_preprocess import CLIP_MEAN, CLIP_STD, preprocess

SPEC = clip._TINY  # 32 px input
WORDS = ["<end>", "a", "red", "blue", "green", "circle", "square", "on", "the", "left", "right"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A converted random tiny open_clip model and the torch model itself."""
    import torch

    ref = random_clip(SPEC, seed=3)
    root = tmp_path_factory.mktemp("clip")
    torch.save(ref.state_dict(), str(root / "open_clip.pth"))
    convert_clip.convert(str(root / "open_clip.pth"), str(root / "clip"))
    return str(root / "clip"), ref


def _context(path, **kw):
    model = types.SimpleNamespace(
        vocab=Vocabulary(WORDS), spec=types.SimpleNamespace(image_sizes=(64,))
    )
    return Context(model=model, model_dir="", data_path="", dataset=kw.pop("dataset", "shapes"),
                   num_images=0, batch_size=0, seed=kw.pop("seed", 0), inception=None,
                   inception_kind="auto", fid_inception=None, fid_reference="test", clip=path,
                   **kw)  # fmt: skip


def _batches(n, size, per_batch=5, seed=0):
    rng = np.random.default_rng(seed)
    images = np.tanh(rng.normal(size=(n, size, size, 3))).astype(np.float32)
    lens = rng.integers(2, 8, size=n)
    ids = np.zeros((n, 8), np.int32)
    for i, k in enumerate(lens):
        ids[i, :k] = rng.integers(1, len(WORDS), size=k)
    classes = rng.integers(0, 4, size=n)
    out = []
    for a in range(0, n, per_batch):
        b = min(n, a + per_batch)
        out.append(GeneratedBatch(final=images[a:b], ids=ids[a:b], lens=lens[a:b],
                                  record={"class_ids": classes[a:b], "index": np.arange(a, b)},
                                  n=b - a, items=np.arange(a, b)))  # fmt: skip
    return images, ids, classes, out


def _torch_embeddings(ref, images, ids, pipeline):
    """open_clip's embeddings, the preprocessing written in torch (GALIP's code, or normalising)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images.transpose(0, 3, 1, 2))
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    if pipeline == "galip":  # tobran/GALIP lib/utils.py transf_to_CLIP_input, at the model's size
        x = F.interpolate(x * 0.5 + 0.5, size=(SPEC.image_size, SPEC.image_size))
        x = ((x + 1) * 0.5 - mean) / std
    else:  # images at the model's size already: open_clip's ToTensor + Normalize
        assert x.shape[-1] == SPEC.image_size
        x = ((x + 1) * 0.5 - mean) / std
    vocab = Vocabulary(WORDS)
    texts = open_clip().tokenizer.tokenize([vocab.decode(r) for r in ids])
    with torch.no_grad():
        return ref.encode_image(x), ref.encode_text(texts)


def _run(ev, batches):
    for b in batches:
        ev.update(b)
    ev.gather(lambda tree: [tree])
    return ev.result()


@pytest.mark.parametrize("variant", ["galip", "clipscore"])
def test_clip_score_equals_open_clip(clip_dir, variant):
    import torch

    path, ref = clip_dir
    images, ids, _, batches = _batches(12, 64)
    got = _run(ClipScore(_context(path, clip_score_variant=variant)), batches)
    img, txt = _torch_embeddings(ref, images, ids, "galip")
    cos = torch.cosine_similarity(img, txt)
    want = 100 * float((cos if variant == "galip" else 2.5 * cos.clamp(min=0)).mean())
    assert got["clip_score_images"] == 12
    assert got["clip_score"] == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_clip_r_precision_equals_open_clip(clip_dir):
    import torch

    path, ref = clip_dir
    images, ids, classes, batches = _batches(20, SPEC.image_size, seed=1)
    got = _run(ClipRPrecision(_context(path, seed=4)), batches)  # default: openai preprocessing
    img, txt = _torch_embeddings(ref, images, ids, "openai")
    idx = sample_mismatched_indices(classes, num=19, rng=np.random.default_rng(4))  # (20, 19)
    cand = torch.cat([txt[:, None], txt[torch.from_numpy(idx)]], 1)  # (20, 20, E)
    cos = torch.cosine_similarity(img[:, None], cand, dim=-1)  # (20, 20)
    hits = (cos.argmax(1) == 0).numpy()
    want, want_std = fold_statistics(hits, 10, seed=4)
    assert got["clip_r_precision_candidates"] == 20
    assert got["clip_r_precision"] == pytest.approx(want, abs=1e-12)
    assert got["clip_r_precision_std"] == pytest.approx(want_std, abs=1e-12)


@pytest.mark.parametrize("cls", [ClipScore, ClipRPrecision])
def test_two_process_shares_add_up_to_one_process(clip_dir, cls):
    """Each "process" takes alternate batches; gathering their statistics gives one process's."""
    _, _, _, batches = _batches(20, SPEC.image_size, per_batch=4, seed=2)
    whole = _run(cls(_context(clip_dir[0])), batches)
    shares = [cls(_context(clip_dir[0])) for _ in range(2)]
    for k, b in enumerate(batches):
        shares[k % 2].update(b)
    trees = []
    for ev in shares:  # what each process sends (gather with itself alone is the identity)
        ev.gather(lambda tree: trees.append(tree) or [tree])
    for ev in shares:  # sharding.process_allgather gives every process both, in process order
        ev.gather(lambda tree: list(trees))
    for ev in shares:
        got = ev.result()
        assert got.keys() == whole.keys()
        for k in got:
            assert got[k] == pytest.approx(whole[k], rel=1e-12)


def test_galip_preprocessing_equals_torch():
    import torch
    import torch.nn.functional as F

    x = np.tanh(np.random.default_rng(0).normal(size=(2, 256, 256, 3))).astype(np.float32)
    ours = np.asarray(preprocess(x, 224, "galip"))
    t = F.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)) * 0.5 + 0.5, size=(224, 224))
    t = ((t + 1) * 0.5 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(
        1, 3, 1, 1
    )
    np.testing.assert_allclose(ours, t.numpy().transpose(0, 2, 3, 1), atol=1e-6)


def test_openai_preprocessing_equals_torch_antialiased_bicubic():
    """torchvision's Resize on tensors (bicubic, antialias=True) + CenterCrop, in torch."""
    import torch
    import torch.nn.functional as F

    x = (np.random.default_rng(0).random((2, 48, 64, 3)) * 255).astype(np.uint8)
    ours = np.asarray(preprocess(x, 32, "openai"))  # shorter side 48 -> 32: (32, 42), crop 32
    t = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    t = F.interpolate(t, size=(32, 42), mode="bicubic", antialias=True)[..., 5:37]
    want = (t.numpy().transpose(0, 2, 3, 1) - np.asarray(CLIP_MEAN)) / np.asarray(CLIP_STD)
    np.testing.assert_allclose(ours, want, atol=1e-5)


def test_openai_preprocessing_is_near_pil_bicubic():
    """open_clip's PIL path (uint8 in and out) on a smooth image: within 2 levels of 255."""
    from PIL import Image

    rng = np.random.default_rng(0)
    small = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8))
    x = np.asarray(small.resize((64, 64), Image.BILINEAR))[None]  # smooth, like generated images
    ours = np.asarray(preprocess(x, 32, "openai"))[0] * np.asarray(CLIP_STD) + CLIP_MEAN
    want = np.asarray(Image.fromarray(x[0]).resize((32, 32), Image.BICUBIC), np.float32) / 255
    diff = np.abs(ours - want) * 255
    assert diff.max() < 2 and diff.mean() < 0.5


def test_missing_clip_directory_skips_with_the_reason():
    ctx = _context(None)
    for cls in (ClipScore, ClipRPrecision):
        with pytest.raises(evaluators.Skip, match="--clip=DIR"):
            cls(ctx)
    assert "--clip=DIR" in NO_CLIP


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory):
    """A prepared shapes dataset (12 test images) and a tiny model directory on its vocabulary."""
    from eval_fixtures import make_model_dir

    from attngan_jax.data import pipeline, tfds_builders

    root = tmp_path_factory.mktemp("evalclip")
    data = tfds_builders.prepare(
        "shapes", str(root / "data"), num_train=4, num_test=12, image_size=64, captions_per_image=2
    )
    vocab = Vocabulary.load(pipeline.vocabulary_path(data))
    return data, make_model_dir(str(root / "runs" / "a"), vocab)


def test_evaluate_without_clip_skips_both_with_the_reason(shapes_model):
    data, model = shapes_model  # needs neither torch nor open_clip
    metrics = ["clip_score", "clip_r_precision"]
    out = evaluators.evaluate(model, data_dir=data, num_images=12, batch_size=6, metrics=metrics)
    assert out["metrics"] == {} and set(out["skipped"]) == set(metrics)
    assert all("--clip=DIR" in r for r in out["skipped"].values())


def test_evaluate_with_clip(clip_dir, shapes_model):
    data, model = shapes_model
    metrics = ["clip_score", "clip_r_precision"]
    out = evaluators.evaluate(model, data_dir=data, num_images=12, batch_size=6, metrics=metrics,
                              clip=clip_dir[0], clip_score_variant="clipscore")  # fmt: skip
    m = out["metrics"]
    assert out["skipped"] == {} and m["clip_score_images"] == 12
    assert 0 <= m["clip_score"] <= 250 and 0 <= m["clip_r_precision"] <= 1
    assert m["clip_r_precision_candidates"] == 12
    assert out["clip_score"]["variant"] == "clipscore" and out["clip_score"]["pipeline"] == "galip"
    assert out["clip_r_precision"]["pipeline"] == "openai"
    assert os.path.isfile(evaluators.metrics_path(model))


def test_fixed_list_gives_clip_r_precision_its_mismatches(clip_dir, shapes_model):
    data, model = shapes_model
    # 20 entries (the list wraps around the 12 records): DM-GAN's folds need 2 per fold
    out = evaluators.evaluate(model, data_dir=data, num_images=20, batch_size=10,
                              protocol="fixed_r_precision", metrics=["clip_r_precision"],
                              clip=clip_dir[0])  # fmt: skip
    assert out["skipped"] == {} and out["num_images"] == 20
    assert out["metrics"]["clip_r_precision_candidates"] == 100  # the list's 99 + the true one
    assert out["clip_r_precision"]["mismatched"] == "the fixed list's"
    assert os.path.isfile(out["clip_r_precision"]["list"])
    assert 0 <= out["metrics"]["clip_r_precision"] <= 1


_TWO_PROCESS_SCRIPT = """
import json, sys
from attngan_jax.runtime import sharding, xla_flags
xla_flags.apply()
sharding.maybe_initialize_distributed()
from attngan_jax.eval import evaluators, sampling
from attngan_jax.eval.evaluators.base import Context
model_dir, data, clip_dir, out = sys.argv[1:]
m = sampling.load_model(model_dir)
m = sampling.local_model(m.spec, m.vocab, m.generator, m.encoders)  # as from a training state
ctx = Context(model=m, model_dir=model_dir, data_path=data, dataset="shapes", num_images=20,
              batch_size=4, seed=3, inception=None, inception_kind="auto", fid_inception=None,
              fid_reference="test", clip=clip_dir)
res = evaluators.run(ctx, ["clip_score", "clip_r_precision"], every_process=True)
if sharding.is_primary():
    json.dump(res["metrics"], open(out, "w"), default=float)
"""


@pytest.mark.slow
def test_two_processes_report_what_one_does(clip_dir, shapes_model, tmp_path):
    """Real processes (gloo, ~65 s): each scores its block of every batch, the shares combined.

    The generator's images themselves differ between the layouts (2 processes x 2 devices vs 1 x 4:
    up to 0.006 of [-1, 1] measured, the generator's numerics, not CLIP's), so the CLIP score
    agrees to 1e-3 relative, not exactly; the counts and the R-precision hits are equal.
    """
    from paths import REPO

    from attngan_jax.runtime.launch import Job

    data, model = shapes_model
    script = tmp_path / "evaluate.py"
    script.write_text(_TWO_PROCESS_SCRIPT)
    res = {}
    for n, devices in ((2, 2), (1, 4)):
        out = tmp_path / f"metrics_{n}.json"
        job = Job([str(script), model, data, clip_dir[0], str(out)], n, devices,
                  log_dir=str(tmp_path / f"logs_{n}"), log_primary=True, cwd=REPO)  # fmt: skip
        assert job.wait(grace_s=30, timeout_s=300) == 0, n
        res[n] = json.loads(out.read_text())
    a, b = res[2], res[1]
    assert a.keys() == b.keys() and a["clip_score_images"] == b["clip_score_images"] == 20
    assert a["clip_score"] == pytest.approx(b["clip_score"], rel=1e-3)
    for k in ("clip_r_precision", "clip_r_precision_std", "clip_r_precision_candidates"):
        assert a[k] == pytest.approx(b[k], abs=1e-12), k
