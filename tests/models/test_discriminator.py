"""Discriminator: parameter counts, shapes, initialisation and the state-dict converter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attngan_jax.convert.common import ConversionError
from attngan_jax.convert.discriminator import convert_discriminator, expected_variables
from attngan_jax.models import discriminator as dm


def _n_params(module) -> int:
    shapes = expected_variables(module)
    return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(shapes["params"]))


@pytest.mark.parametrize(
    "factory, count",
    [
        (dm.BirdsD64, 6_313_730),
        (dm.BirdsD128, 19_424_002),
        (dm.BirdsD256, 71_858_946),
        (dm.CocoD64, 13_304_450),
        (dm.CocoD128, 42_800_258),
        (dm.CocoD256, 160_774_274),
    ],
)
def test_parameter_counts_match_reference(factory, count):
    assert _n_params(factory()) == count


def test_cond_only_discriminator_drops_uncond_head():
    # AttnDCGAN's D_NET256(b_jcu=False): no UNCOND_DNET.outlogits (512*16 weights + 1 bias).
    assert _n_params(dm.BirdsD256(uncond=False)) == 71_858_946 - (512 * 16 + 1)


@pytest.mark.parametrize("factory", [dm.TinyD64, dm.TinyD128, dm.TinyD256])
def test_tiny_shapes_and_separate_batches(factory):
    d = factory()
    v = dm.init_discriminator(d, jax.random.key(0))
    s = d.image_size
    imgs = jax.random.uniform(jax.random.key(1), (3, s, s, 3), minval=-1, maxval=1)
    sent = jax.random.normal(jax.random.key(2), (3, d.emb_dim))
    code, upd = d.apply(v, imgs, True, mutable=["batch_stats"])
    assert code.shape == (3, 4, 4, 8 * d.df_dim)
    # Running stats moved (train mode), the heads' did not (they were not called).
    moved = jax.tree_util.tree_map(
        lambda a, b: bool(jnp.any(a != b)), upd["batch_stats"], v["batch_stats"]
    )
    assert moved["img_code_s16"]["bn3"]["mean"]
    wrong, _ = d.apply(v, code[:2], sent[1:], True, method="cond_logits", mutable=["batch_stats"])
    assert wrong.shape == (2,) and wrong.dtype == jnp.float32
    unc = d.apply(v, code, method="uncond_logits")
    assert unc.shape == (3,)
    if s != 64:
        return
    # all_logits = the three pieces (eval mode).
    c2, cond2, unc2 = d.apply(v, imgs, sent, False, method="all_logits")
    code_e = d.apply(v, imgs, False)
    np.testing.assert_allclose(c2, code_e, rtol=1e-6)
    np.testing.assert_allclose(
        cond2, d.apply(v, code_e, sent, False, method="cond_logits"), rtol=1e-6
    )
    np.testing.assert_allclose(unc2, d.apply(v, code_e, method="uncond_logits"), rtol=1e-6)


def test_init_follows_reference_weights_init():
    d = dm.Discriminator(df_dim=8, emb_dim=16, image_size=64)
    v = dm.init_discriminator(d, jax.random.key(0))
    scales = np.concatenate(
        [np.asarray(v["params"]["img_code_s16"][f"bn{i}"]["scale"]).ravel() for i in (3, 6, 9)]
    )
    assert not np.allclose(scales, 1.0)  # redrawn, not the BatchNorm default
    assert abs(scales.mean() - 1.0) < 0.01 and 0.01 < scales.std() < 0.03
    k = np.asarray(v["params"]["img_code_s16"]["conv8"]["kernel"]).reshape(-1, 64)  # (kh kw I, O)
    np.testing.assert_allclose(k.T @ k, np.eye(64), atol=1e-5)  # orthogonal columns
    bias = float(v["params"]["COND_DNET"]["outlogits"]["bias"][0])
    assert abs(bias) <= 1 / np.sqrt(64 * 16)


def _to_torch(variables: dict) -> dict[str, np.ndarray]:
    """Our variables -> a torch-keyed state dict (the inverse of the converter's mapping)."""
    sd = {}
    flat = jax.tree_util.tree_flatten_with_path(variables)[0]
    for path, leaf in flat:
        coll, *names = [p.key for p in path]
        a = np.asarray(leaf)
        mod, leafname = names[:-1], names[-1]
        parts = []
        for m in mod:
            if m.startswith("conv") and m[4:].isdigit():
                parts.append(m[4:])
            elif m.startswith("bn") and m[2:].isdigit():
                parts.append(m[2:])
            elif m == "conv":
                parts.append("0")
            elif m == "bn":
                parts.append("1")
            elif m == "outlogits":
                parts += ["outlogits", "0"]
            else:
                parts.append(m)
        key = ".".join(parts)
        torch_leaf = {
            "kernel": "weight",
            "scale": "weight",
            "bias": "bias",
            "mean": "running_mean",
            "var": "running_var",
        }[leafname]
        if leafname == "kernel":
            a = a.transpose(3, 2, 0, 1)  # (kh, kw, I, O) -> (O, I, kh, kw)
        sd[f"{key}.{torch_leaf}"] = a
        assert coll in ("params", "batch_stats")
    return sd


@pytest.mark.parametrize("size", [64, 128, 256])
def test_converter_round_trip(size):
    d = dm.Discriminator(df_dim=4, emb_dim=8, image_size=size)
    v = dm.init_discriminator(d, jax.random.key(size))
    v["batch_stats"] = jax.tree_util.tree_map(lambda a: a + 0.5, v["batch_stats"])
    sd = _to_torch(v)
    assert len(sd) == {64: 25, 128: 35, 256: 45}[size]  # tensor counts of ref. §15.2
    back = convert_discriminator({"netsD.0." + k: x for k, x in sd.items()}, d, prefix="netsD.0.")
    jax.tree_util.tree_map(
        np.testing.assert_array_equal, back, jax.tree_util.tree_map(np.asarray, v)
    )


def test_converter_errors_name_key_shapes_and_cause():
    d8 = dm.Discriminator(df_dim=8, emb_dim=16, image_size=64)
    sd = _to_torch(dm.init_discriminator(d8, jax.random.key(0)))
    wrong_df = dm.Discriminator(df_dim=16, emb_dim=16, image_size=64)
    with pytest.raises(ConversionError) as e:
        convert_discriminator(sd, wrong_df, source="netD0.pth")
    msg = str(e.value)
    assert "img_code_s16.0.weight" in msg and "(8, 3, 4, 4)" in msg and "(16, 3, 4, 4)" in msg
    assert "DF_DIM" in msg and "netD0.pth" in msg
    # An AttnDCGAN-style module (no uncond head) refuses the extra UNCOND_DNET keys ...
    with pytest.raises(ConversionError, match="UNCOND_DNET"):
        convert_discriminator(sd, dm.Discriminator(8, 16, 64, uncond=False))
    # ... and a D_NET128 module reports the missing trunk block.
    with pytest.raises(ConversionError, match="img_code_s32.0.weight"):
        convert_discriminator(sd, dm.Discriminator(8, 16, 128))
    # A wrong sentence size shows on the joint conv.
    with pytest.raises(ConversionError, match="COND_DNET.jointConv.0.weight"):
        convert_discriminator(sd, dm.Discriminator(8, 32, 64))


@pytest.mark.parametrize("size", [16, 32])
def test_cpu_demo_sizes_reach_the_4x4_heads(size):
    d = dm.Discriminator(df_dim=4, emb_dim=8, image_size=size)
    v = dm.init_discriminator(d, jax.random.key(size))
    imgs = jax.random.uniform(jax.random.key(1), (3, size, size, 3), minval=-1.0, maxval=1.0)
    code, cond, unc = d.apply(v, imgs, jnp.ones((3, 8)), False, method="all_logits")
    assert code.shape == (3, 4, 4, 32) and cond.shape == unc.shape == (3,)
    assert np.all(np.isfinite(cond)) and np.all(np.isfinite(unc))


def test_unsupported_size_names_the_choices():
    d = dm.Discriminator(df_dim=4, emb_dim=8, image_size=48)
    with pytest.raises(ValueError, match="16, 32, 64, 128 or 256"):
        dm.init_discriminator(d, jax.random.key(0))


def _assert_conv2d_gradients_equal_xla(x, w, strides, padding, g, method):
    """Gradients of ``sum(conv2d(x, w) * g)`` w.r.t. x and w: ``method`` (jitted) vs ``"xla"``."""
    from attngan_jax.models.layers import conv2d

    def loss(x, w, method):
        return jnp.sum(conv2d(x, w, strides, padding, method) * g)

    ref = jax.grad(loss, (0, 1))(x, w, "xla")
    got = jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)(x, w, method)
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a, r, atol=1e-5 * float(np.max(np.abs(r))))


def _conv2d_case(x_shape, k, stride, pad, features, seed):
    """``(x, w, strides, padding, y, g)``: random input and kernel, XLA's output y and a cotangent."""
    from attngan_jax.models.layers import conv2d

    kx, kw, kg = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, x_shape)
    w = jax.random.normal(kw, (k, k, x_shape[-1], features))
    strides, padding = (stride, stride), ((pad, pad), (pad, pad))
    y = conv2d(x, w, strides, padding, "xla")
    return x, w, strides, padding, y, jax.random.normal(kg, y.shape)


@pytest.mark.parametrize(
    "x_shape, k, stride, pad",
    [
        ((2, 8, 8, 6), 4, 2, 1),
        ((2, 4, 4, 5), 3, 1, 1),
        ((3, 7, 5, 4), 3, 2, 0),
        ((2, 4, 4, 8), 4, 4, 0),
    ],
)
def test_conv2d_matmul_gradients_equal_xla(x_shape, k, stride, pad):
    """layers.conv2d: the im2col/col2im gradients equal XLA's transposed convolutions."""
    from attngan_jax.models.layers import conv2d

    x, w, strides, padding, y, g = _conv2d_case(x_shape, k, stride, pad, 7, seed=0)
    np.testing.assert_array_equal(conv2d(x, w, strides, padding, "matmul"), y)

    _assert_conv2d_gradients_equal_xla(x, w, strides, padding, g, "matmul")
    with pytest.raises(ValueError, match="matmul"):
        conv2d(x, w, strides, padding, "fft")


@pytest.mark.parametrize(
    "x_shape, k, stride, pad",
    [
        ((2, 2, 2, 6), 3, 1, 1),  # the small trunk's last conv at 32x32 inputs (2x2 maps)
        ((2, 4, 4, 5), 3, 2, 1),  # its stride-2 conv from 4x4 to 2x2
        ((3, 7, 5, 4), 3, 2, 0),
        ((1, 1, 1, 3), 3, 1, 1),
    ],
)
def test_conv2d_im2col_equals_xla(x_shape, k, stride, pad):
    """layers.conv2d: the convolution as one matmul over its patches equals XLA's, gradients too."""
    from attngan_jax.models.layers import conv2d

    x, w, strides, padding, y, g = _conv2d_case(x_shape, k, stride, pad, 7, seed=2)
    np.testing.assert_allclose(conv2d(x, w, strides, padding, "im2col"), y, rtol=1e-5, atol=1e-5)
    _assert_conv2d_gradients_equal_xla(x, w, strides, padding, g, "im2col")


def test_conv2d_auto_takes_im2col_only_for_tiny_padded_maps(monkeypatch):
    """``grad="auto"`` on CPU: im2col for padded convs with <= 4 output pixels, not otherwise."""
    from attngan_jax.models import kernels
    from attngan_jax.models.layers import conv2d

    calls = []
    real = kernels.conv_im2col
    monkeypatch.setattr(kernels, "conv_im2col", lambda *a: calls.append(a[0].shape) or real(*a))
    w = jnp.ones((3, 3, 4, 4))
    conv2d(jnp.ones((1, 2, 2, 4)), w, (1, 1), ((1, 1), (1, 1)), "auto")  # 2x2 out, padded
    conv2d(jnp.ones((1, 4, 4, 4)), w, (1, 1), ((1, 1), (1, 1)), "auto")  # 4x4 out
    conv2d(jnp.ones((1, 4, 4, 4)), w, (1, 1), ((0, 0), (0, 0)), "auto")  # 2x2 out, no padding
    assert calls == ([(1, 2, 2, 4)] if jax.default_backend() == "cpu" else [])


@pytest.mark.parametrize(
    "x_shape, k, stride, pad",
    [
        ((2, 8, 8, 6), 4, 2, 1),  # the discriminators' downsampling conv
        ((2, 9, 7, 3), 4, 2, 1),  # odd sizes: the folded input gets a zero row/column
        ((1, 12, 12, 2), 6, 3, 2),
        ((2, 8, 8, 4), 4, 4, 0),
    ],
)
def test_conv2d_s2d_gradients_equal_xla(x_shape, k, stride, pad):
    """layers.conv2d: gradients through the space-to-depth form equal XLA's strided convolution's."""
    from attngan_jax.models.kernels import conv_s2d
    from attngan_jax.models.layers import conv2d

    x, w, strides, padding, y, g = _conv2d_case(x_shape, k, stride, pad, 5, seed=1)
    np.testing.assert_array_equal(conv2d(x, w, strides, padding, "s2d"), y)  # XLA's forward
    np.testing.assert_allclose(conv_s2d(x, w, strides, padding), y, rtol=1e-5, atol=1e-5)

    _assert_conv2d_gradients_equal_xla(x, w, strides, padding, g, "s2d")


def test_conv2d_s2d_rejects_unfoldable_convs():
    from attngan_jax.models.layers import conv2d

    x, w = jnp.zeros((1, 7, 7, 2)), jnp.zeros((3, 3, 2, 4))
    with pytest.raises(ValueError, match="divide the kernel"):
        conv2d(x, w, (2, 2), ((0, 0), (0, 0)), "s2d")


@pytest.mark.parametrize("shape", [(3, 5, 5, 4), (3, 4)])
def test_batchnorm_groups_equal_separate_calls(shape):
    """``groups=2`` on interleaved rows = two BatchNorm calls, running stats in that order."""
    from attngan_jax.models.layers import BatchNorm

    bn = BatchNorm()
    r = np.random.default_rng(0)
    a = r.normal(1.0, 2.0, size=shape).astype(np.float32)
    b = r.normal(-1.0, 0.5, size=shape).astype(np.float32)
    v = bn.init(jax.random.key(0), a, True)
    v = {
        "params": v["params"],
        "batch_stats": {"mean": jnp.full(shape[-1], 0.3), "var": 2.0 * jnp.ones(shape[-1])},
    }
    st, outs = v["batch_stats"], []
    for x in (a, b):
        y, u = bn.apply(
            {"params": v["params"], "batch_stats": st}, x, True, mutable=["batch_stats"]
        )
        outs.append(y)
        st = u["batch_stats"]
    ab = jnp.stack([a, b], axis=1).reshape(2 * shape[0], *shape[1:])
    y, u = bn.apply(v, ab, True, groups=2, mutable=["batch_stats"])
    y = y.reshape(shape[0], 2, *shape[1:])
    np.testing.assert_allclose(y[:, 0], outs[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[:, 1], outs[1], rtol=1e-5, atol=1e-5)
    jax.tree_util.tree_map(
        lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-6), u["batch_stats"], st
    )
    # Order matters for the running stats (b after a), and eval mode ignores the groups.
    ba = jnp.stack([b, a], axis=1).reshape(ab.shape)
    _, u_ba = bn.apply(v, ba, True, groups=2, mutable=["batch_stats"])
    assert not np.allclose(u_ba["batch_stats"]["mean"], st["mean"])
    np.testing.assert_array_equal(bn.apply(v, ab, False, groups=2), bn.apply(v, ab, False))
    with pytest.raises(ValueError, match="divide the batch"):
        bn.apply(v, ab[:5], True, groups=2, mutable=["batch_stats"])
