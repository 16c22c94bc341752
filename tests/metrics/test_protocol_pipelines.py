"""Each protocol's image pipeline against its reference code, re-implemented here from the repos.

* DM-GAN ``eval/FID`` (``fid_score.py``, ``inception.py``; images saved by ``trainer.sampling``):
  the whole path through a torch Inception-v3 with random weights (torchvision layout, written
  out in ``benchmarks/torch_models.py``) vs ours on the converted weights: features and FID.
* DF-GAN ``lib/modules.py:eval`` and TTUR / torch-fidelity's TF 1.x resize: the 299x299 network
  input (the trunk after it is the parity-tested one, ``tests/test_parity.py``).
* improved-gan's IS: logits ``pool3 @ W`` without the bias, and its split loop (the head on a
  stand-in trunk: the trunk is not what changes).

torch is test-only; a test that needs it skips without it.
"""

import os
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from eval_fixtures import flax_to_torch, random_variables
from paths import REPO
from PIL import Image

from attngan_jax.eval import protocols
from attngan_jax.eval.evaluators.fid import used_images
from attngan_jax.metrics import inception_score, networks
from attngan_jax.metrics.networks import DEFAULT_PIPELINES, EvalInceptionNet, load_eval_inception
from attngan_jax.models.resize import resize_bilinear, resize_bilinear_tf1

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture(scope="module")
def torchvision_weights(tmp_path_factory):
    """A random torchvision-keyed Inception-v3 (+1000-way fc) as float32 .npz, and its dict."""
    module = EvalInceptionNet(num_classes=1000)
    expected = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
    sd = flax_to_torch(random_variables(dict(expected), seed=3), "inception")
    path = str(tmp_path_factory.mktemp("w") / "inception_v3_random.npz")
    np.savez(path, **sd)
    return path, sd


def _images(seed: int, n: int, size: int = 64, shift: float = 0.0) -> np.ndarray:
    """(n, size, size, 3) float32 generator-like images in [-1, 1] (smooth + noise, tanh)."""
    rng = np.random.default_rng(seed)
    low = rng.normal(size=(n, 8, 8, 3))
    up = np.asarray(jax.image.resize(low, (n, size, size, 3), "linear"))
    return np.tanh(up + 0.3 * rng.normal(size=up.shape) + shift).astype(np.float32)


# ------------------------------------------------------------------------ DM-GAN reference code
def _dmgan_inception(sd):
    """DM-GAN ``eval/FID/inception.py`` ``InceptionV3([3])``: torchvision blocks, no fc."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import torch_models as tm

    net = tm.CNN_ENCODER()  # the torchvision Inception-v3 trunk, torchvision key names
    missing, _ = net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    assert sorted(missing) == sorted(k for k in net.state_dict() if k.startswith("emb_")), missing
    net.eval()

    def pool3(x):  # blocks 0-3 of InceptionV3.forward, then AdaptiveAvgPool2d((1, 1))
        with torch.no_grad():
            x = net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(x)))
            x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.max_pool2d(net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
            for n in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
                x = getattr(net, "Mixed_" + n)(x)
            return F.adaptive_avg_pool2d(x, (1, 1))[:, :, 0, 0].numpy()

    return pool3


def _dmgan_features(images: np.ndarray, pool3, batch_size: int) -> np.ndarray:
    """DM-GAN's path from generated float images to pool3 features, step by step."""
    # code/trainer.py sampling: im = (im + 1.0) * 127.5; im = im.astype(np.uint8); PNG
    saved = [((im + 1.0) * 127.5).astype(np.uint8) for im in images]
    # eval/FID/fid_score.py: Resize((299, 299)) (PIL bilinear) + ToTensor (/255), DataLoader
    # (batch_size, shuffle=False, drop_last=True)
    tensors = [
        torch.from_numpy(np.array(Image.fromarray(im).resize((299, 299), Image.BILINEAR)))
        .permute(2, 0, 1)
        .float()
        .div(255)
        for im in saved
    ]
    feats = []
    for i in range(len(tensors) // batch_size):  # drop_last
        x = torch.stack(tensors[i * batch_size : (i + 1) * batch_size])
        # inception.py forward: F.upsample(size=(299, 299), align_corners=True) (identity here)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=True)
        x = x.clone()  # normalize_input, on the [0, 1] input
        x[:, 0] = x[:, 0] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x[:, 1] = x[:, 1] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x[:, 2] = x[:, 2] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        feats.append(pool3(x))
    return np.concatenate(feats).astype(np.float64)


def _frechet(a: np.ndarray, b: np.ndarray) -> float:
    """FID of two feature sets via symmetric eigendecompositions (rank-deficient covariances:
    scipy's sqrtm of a 2048x2048 product is slow; fid.frechet_distance is tested elsewhere)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * tr)


@pytest.mark.slow  # two Inception-v3 compiles + a torch Inception on 14 images (~40 s of CPU)
def test_dmgan_pytorch_fid_equals_dmgan_pipeline(torchvision_weights):
    path, sd = torchvision_weights
    rec = protocols.get("dmgan_pytorch_fid").fid
    assert (rec.weights, rec.batch_size, rec.drop_last) == ("torchvision", 50, True)
    bs, n = 3, 7  # DM-GAN's drop_last at a test-sized batch: 6 of 7 images count
    a, b = _images(0, n), _images(1, n, shift=0.4)
    pool3 = _dmgan_inception(sd)
    ref_a, ref_b = _dmgan_features(a, pool3, bs), _dmgan_features(b, pool3, bs)
    assert len(ref_a) == used_images(n, bs, True) == 6

    net = load_eval_inception(path, pipeline=rec.pipeline)
    ours_a = net(a)[0][:6].astype(np.float64)
    ours_b = net(b)[0][:6].astype(np.float64)
    scale = np.abs(ref_a).max()
    np.testing.assert_allclose(ours_a, ref_a, rtol=1e-3, atol=1e-3 * scale)
    np.testing.assert_allclose(ours_b, ref_b, rtol=1e-3, atol=1e-3 * scale)
    fid_ref, fid_ours = _frechet(ref_a, ref_b), _frechet(ours_a, ours_b)
    assert fid_ours == pytest.approx(fid_ref, rel=1e-3)

    # The old torchvision default (x/127.5-1 of the rounded image) is another number: the test
    # would fail with it.
    old = load_eval_inception(path, pipeline=DEFAULT_PIPELINES["torchvision"])
    old_a, old_b = old(a)[0][:6], old(b)[0][:6]
    assert np.abs(old_a - ref_a).max() > 0.05 * scale
    assert abs(_frechet(old_a, old_b) - fid_ref) > 0.05 * fid_ref


class _PoolStub(nn.Module):
    """Stands in for the Inception trunk: "pool3" = the flattened input (the head is tested)."""

    fid_variant: bool = False
    dtype: Any = None
    tf_slim_pools: bool = False

    @nn.compact
    def __call__(self, x, train):
        return None, x.reshape(x.shape[0], -1)  # (B, D)


def test_unbiased_logits_give_improved_gan_is(torchvision_weights, monkeypatch):
    rec = protocols.get("attngan_paper").is_recipe("coco")
    assert (rec.weights, rec.fc_bias, rec.splits) == ("fid", False, 10)
    net = load_eval_inception(torchvision_weights[0], fc_bias=False)  # built, not run
    assert not net.module.fc_bias and net.convention["logits"] == "pool3 @ W (no fc bias)"

    monkeypatch.setattr(networks, "InceptionTrunk", _PoolStub)
    rng = np.random.default_rng(6)
    pool = rng.normal(size=(40, 4, 4, 1)).astype(np.float32)  # "pool3" (40, 16)
    params = {"fc": {"kernel": rng.normal(size=(16, 12)).astype(np.float32),
                     "bias": 3.0 * rng.normal(size=12).astype(np.float32)}}  # fmt: skip
    head = lambda b: EvalInceptionNet(num_classes=12, resize=False, fc_bias=b)  # noqa: E731
    _, lu = head(False).apply({"params": params}, pool)
    _, lb = head(True).apply({"params": params}, pool)
    want = pool.reshape(40, 16).astype(np.float64) @ params["fc"]["kernel"]  # tf.matmul(pool3, W)
    np.testing.assert_allclose(lu, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(lb) - want, np.broadcast_to(params["fc"]["bias"],
                               want.shape), atol=1e-5)  # fmt: skip
    # improved-gan get_inception_score: softmax(pool3 @ W), 10 splits of consecutive rows
    preds = np.exp(want - want.max(1, keepdims=True))
    preds /= preds.sum(1, keepdims=True)
    scores = []
    for i in range(10):
        part = preds[(i * preds.shape[0] // 10) : ((i + 1) * preds.shape[0] // 10), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    acc = inception_score.InceptionScoreAccumulator(40, 12, splits=rec.splits, from_logits=True)
    for i in range(0, 40, 7):
        acc.update(np.asarray(lu)[i : i + 7])
    np.testing.assert_allclose(acc.result(), (np.mean(scores), np.std(scores)), rtol=1e-5)
    biased = inception_score.inception_score(np.asarray(lb), from_logits=True)
    assert abs(biased[0] - np.mean(scores)) > 0.05 * np.mean(scores)  # the bias matters


# --------------------------------------------------------------------- network inputs (no trunk)
def test_dfgan_input_equals_dfgan_eval():
    pipe = protocols.get("dfgan").fid.pipeline
    fake = _images(3, 3)  # DF-GAN feeds netG's float output, never quantised
    x = torch.from_numpy(fake).permute(0, 3, 1, 2)
    # modules.py eval: Normalize((-1,-1,-1),(2,2,2)) then Resize((299, 299)) on a tensor
    # (torchvision 0.10: F.interpolate bilinear, align_corners=False)
    x = (x - (-1.0)) / 2.0
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    x = x.clone()  # models/inception.py normalize_input (upsample to 299 with align_corners=True:
    x[:, 0] = x[:, 0] * (0.229 / 0.5) + (0.485 - 0.5) / 0.5  # identity at 299)
    x[:, 1] = x[:, 1] * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x[:, 2] = x[:, 2] * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    ref = x.permute(0, 2, 3, 1).numpy()
    assert pipe.float_resize == "half_pixel" and pipe.quantise == "none"
    ours = np.asarray(resize_bilinear(jnp.asarray(pipe.to_input(fake)), (299, 299), False))
    np.testing.assert_allclose(ours, ref, atol=2e-6)
    dm = protocols.DMGAN_FID_PIPELINE.to_input(fake)  # DM-GAN's (quantised, PIL) is not it
    assert np.abs(dm - ref).max() > 1e-3


def _tf1_resize_torch_fidelity(x, size):
    """torch-fidelity ``interpolate_bilinear_2d_like_tensorflow1x(..., align_corners=False)``,
    ``method="slow"`` (``resample_manually``), as written there."""
    scale_x, scale_y = x.shape[3] / size[1], x.shape[2] / size[0]
    grid_x = torch.arange(0, size[1], 1, dtype=x.dtype) * torch.tensor(scale_x, dtype=torch.float32)
    grid_x_lo = grid_x.long()
    grid_x_hi = (grid_x_lo + 1).clamp_max(x.shape[3] - 1)
    grid_dx = grid_x - grid_x_lo.float()
    grid_y = torch.arange(0, size[0], 1, dtype=x.dtype) * torch.tensor(scale_y, dtype=torch.float32)
    grid_y_lo = grid_y.long()
    grid_y_hi = (grid_y_lo + 1).clamp_max(x.shape[2] - 1)
    grid_dy = grid_y - grid_y_lo.float()
    in_00 = x[:, :, grid_y_lo, :][:, :, :, grid_x_lo]
    in_01 = x[:, :, grid_y_lo, :][:, :, :, grid_x_hi]
    in_10 = x[:, :, grid_y_hi, :][:, :, :, grid_x_lo]
    in_11 = x[:, :, grid_y_hi, :][:, :, :, grid_x_hi]
    in_0 = in_00 + (in_01 - in_00) * grid_dx.view(1, 1, 1, size[1])
    in_1 = in_10 + (in_11 - in_10) * grid_dx.view(1, 1, 1, size[1])
    return in_0 + (in_1 - in_0) * grid_dy.view(1, 1, size[0], 1)


@pytest.mark.parametrize("preset", ["ttur_tf_fid", "attngan_paper"])
def test_tf_graph_input_equals_tf1_resize_and_scale(preset):
    p = protocols.get(preset)
    pipe = p.fid.pipeline if p.fid else p.is_recipe("coco").pipeline
    fake = _images(4, 2, size=48)
    # the images TTUR / improved-gan read: saved PNGs, 0..255 fed to the graph's ExpandDims
    u8 = ((fake + 1.0) * 127.5).astype(np.uint8)
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float()
    x = _tf1_resize_torch_fidelity(x, (299, 299))
    ref = ((x - 128) / 128).permute(0, 2, 3, 1).numpy()  # the graph's Sub / Mul
    ours = np.asarray(resize_bilinear_tf1(jnp.asarray(pipe.to_input(fake)), (299, 299)))
    np.testing.assert_allclose(ours, ref, atol=2e-6)
    half = np.asarray(resize_bilinear(jnp.asarray(pipe.to_input(fake)), (299, 299), False))
    assert np.abs(half - ref).max() > 1e-2  # pytorch-fid's half-pixel resize is another input


def test_stackgan_is_input_is_scipy_imresize_then_minus1_1():
    pipe = protocols.get("attngan_paper").is_recipe("birds").pipeline
    fake = _images(5, 2)
    # StackGAN inception_score.py: scipy.misc.imresize(img, (299, 299, 3), 'bilinear') of the
    # saved uint8 image (PIL bilinear, uint8 out), then img / 127.5 - 1
    u8 = ((fake + 1.0) * 127.5).astype(np.uint8)
    r = np.stack([np.asarray(Image.fromarray(im).resize((299, 299), Image.BILINEAR)) for im in u8])
    np.testing.assert_array_equal(pipe.to_input(fake), r.astype(np.float32) / 127.5 - 1.0)
