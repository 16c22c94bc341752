"""Unit tests of the bilinear resize, the Inception networks, CNNEncoder and their converters.

Fixture parity (b_cnn_encoder, f_inception) runs in tests/test_parity.py through the registered
runners; here: the resize against a plain loop of torch's formula, parameter counts, the small
trunk, and converter behaviour (errors, optional keys, pytorch-fid key names).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attngan_jax.convert.common import ConversionError
from attngan_jax.convert.inception import (
    convert_fid_inception,
    convert_image_encoder,
    convert_torchvision_inception,
    fid_key_to_torchvision_key,
)
from attngan_jax.models.image_encoder import CNNEncoder, trainable_mask
from attngan_jax.models.inception import TRUNK_LAYOUT, FIDInceptionV3, InceptionClassifier
from attngan_jax.models.resize import interpolation_matrix, resize_bilinear
from attngan_jax.parity import load_case, split_arrays


def _torch_bilinear_loop(x: np.ndarray, oh: int, ow: int, align_corners: bool, coord) -> np.ndarray:
    """Straight per-pixel transcription of torch's upsample_bilinear2d, NHWC.

    ``coord`` is the dtype of the source-coordinate arithmetic (torch's CPU kernel uses float32
    for float32 images); the interpolation itself is float64.
    """
    b, h, w, c = x.shape
    half = coord(0.5)

    def src(d, n_in, n_out):
        if align_corners:
            return coord(d) * (coord(n_in - 1) / coord(n_out - 1)) if n_out > 1 else coord(0)
        return max(coord(n_in) / coord(n_out) * (coord(d) + half) - half, coord(0))

    out = np.zeros((b, oh, ow, c))
    for i in range(oh):
        sy = src(i, h, oh)
        y0 = int(np.floor(sy))
        y1, ly = min(y0 + 1, h - 1), sy - y0
        for j in range(ow):
            sx = src(j, w, ow)
            x0 = int(np.floor(sx))
            x1, lx = min(x0 + 1, w - 1), sx - x0
            out[:, i, j] = (1 - ly) * ((1 - lx) * x[:, y0, x0] + lx * x[:, y0, x1]) + ly * (
                (1 - lx) * x[:, y1, x0] + lx * x[:, y1, x1]
            )
    return out


@pytest.mark.parametrize("align_corners", [True, False])
def test_resize_identity_at_same_size(align_corners):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, 5, 3)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(resize_bilinear(x, (7, 5), align_corners)), x)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize(
    "size_in,size_out", [((5, 7), (9, 4)), ((16, 16), (19, 19)), ((8, 3), (3, 8))]
)
def test_resize_matches_torch_formula(align_corners, size_in, size_out):
    x = np.random.default_rng(1).normal(size=(2, *size_in, 3)).astype(np.float32)
    ours = np.asarray(resize_bilinear(jnp.asarray(x), size_out, align_corners))
    assert ours.shape == (2, *size_out, 3)
    # Same float32 coordinate arithmetic as torch: equal up to float32 summation rounding.
    ref32 = _torch_bilinear_loop(x.astype(np.float64), *size_out, align_corners, np.float32)
    np.testing.assert_allclose(ours, ref32, atol=1e-6)
    # Exact coordinates: the float32 coordinates carry ~1e-6 relative error (as torch's do).
    ref64 = _torch_bilinear_loop(x.astype(np.float64), *size_out, align_corners, np.float64)
    np.testing.assert_allclose(ours, ref64, atol=2e-5)


def test_resize_conventions_differ_and_rows_sum_to_one():
    a_t, a_f = interpolation_matrix(256, 299, True), interpolation_matrix(256, 299, False)
    np.testing.assert_allclose(a_t.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(a_f.sum(1), 1.0, atol=1e-6)
    assert np.abs(a_t - a_f).max() > 0.05  # sub-pixel shifts of up to ~0.07 px


def test_resize_align_corners_true_keeps_corner_pixels():
    x = np.random.default_rng(2).normal(size=(1, 6, 9, 2)).astype(np.float32)
    y = np.asarray(resize_bilinear(jnp.asarray(x), (11, 4), True))
    for (i, j), (k, m) in {
        (0, 0): (0, 0),
        (0, -1): (0, -1),
        (-1, 0): (-1, 0),
        (-1, -1): (-1, -1),
    }.items():
        np.testing.assert_allclose(y[0, i, j], x[0, k, m], atol=1e-6)
    # align_corners=False does not (half-pixel centres): the first output mixes two inputs.
    y_f = np.asarray(resize_bilinear(jnp.asarray(x), (11, 4), False))
    assert not np.allclose(y_f[0, 0, 0], x[0, 0, 0])


def _count(tree) -> int:
    return int(sum(np.prod(v.shape) for v in jax.tree_util.tree_leaves(tree)))


def test_cnn_encoder_parameter_count():
    shapes = jax.eval_shape(
        CNNEncoder(nef=256).init, jax.random.key(0), jnp.zeros((1, 299, 299, 3))
    )
    params = shapes["params"]
    assert _count(params) == 22_506_720  # reference §15.4
    assert _count({k: params[k] for k in ("emb_features", "emb_cnn_code")}) == 721_152
    assert params["emb_features"]["kernel"].shape == (1, 1, 768, 256)
    assert params["emb_cnn_code"]["kernel"].shape == (2048, 256)
    mask = trainable_mask(params)
    trainable = [
        v for v, m in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(mask)) if m
    ]
    assert _count(trainable) == 721_152
    # 94 BasicConv2d units, each with a BatchNorm
    assert sum(max(len(u), 1) for _, u in TRUNK_LAYOUT) == 94
    bn_affine = [v for v in jax.tree_util.tree_leaves(params["inception"]) if v.ndim == 1]
    assert len(bn_affine) == 2 * 94
    assert _count(shapes["batch_stats"]) == _count(bn_affine)  # mean/var beside scale/bias


def test_small_trunk_encoder_shapes_and_train_mode():
    enc = CNNEncoder(nef=16, trunk="small", small_widths=(8, 16, 24, 32))
    x = jax.random.uniform(jax.random.key(0), (3, 64, 64, 3), minval=-1, maxval=1)
    v = jax.jit(enc.init)(jax.random.key(1), x)
    feats, code = jax.jit(enc.apply)(v, x)
    assert feats.shape == (3, 8, 8, 16) and code.shape == (3, 16)
    assert v["params"]["emb_features"]["kernel"].shape == (1, 1, 24, 16)
    assert all(jax.tree_util.tree_leaves(trainable_mask(v["params"], "small")))
    (f2, c2), upd = jax.jit(lambda v, x: enc.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
    assert f2.shape == feats.shape and np.all(np.isfinite(np.asarray(c2)))
    before = v["batch_stats"]["small"]["stem"]["bn"]["mean"]
    assert not np.allclose(upd["batch_stats"]["small"]["stem"]["bn"]["mean"], before)
    # gradients reach the image (needed when G's loss goes through the encoder)
    g = jax.jit(jax.grad(lambda im: jnp.sum(enc.apply(v, im)[1] ** 2)))(x)
    assert float(jnp.abs(g).max()) > 0
    # bfloat16 compute, float32 parameters
    enc16 = CNNEncoder(nef=16, trunk="small", small_widths=(8, 16, 24, 32), dtype=jnp.bfloat16)
    f16, c16 = jax.jit(enc16.apply)(v, x)
    assert f16.dtype == jnp.bfloat16 and c16.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(c16, np.float32), code, atol=0.05 * float(jnp.abs(code).max())
    )


@pytest.fixture(scope="module")
def encoder_weights(parity_dir):
    _, arrays = load_case(parity_dir, "b_cnn_encoder")
    return split_arrays(arrays)[0]


def test_convert_image_encoder_without_num_batches_tracked(encoder_weights):
    sd = {k: v for k, v in encoder_weights.items() if not k.endswith("num_batches_tracked")}
    assert len(sd) == 473
    v = convert_image_encoder(sd, CNNEncoder(nef=32))
    w = sd["Mixed_6e.branch7x7_2.conv.weight"]  # (O, I, 1, 7)
    np.testing.assert_array_equal(
        v["params"]["inception"]["Mixed_6e"]["branch7x7_2"]["conv"]["kernel"],
        w.transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        v["batch_stats"]["inception"]["Conv2d_1a_3x3"]["bn"]["var"],
        sd["Conv2d_1a_3x3.bn.running_var"],
    )
    np.testing.assert_array_equal(
        v["params"]["emb_cnn_code"]["kernel"], sd["emb_cnn_code.weight"].T
    )


def test_convert_image_encoder_wrong_nef_names_key_and_shapes(encoder_weights):
    with pytest.raises(ConversionError) as e:
        convert_image_encoder(encoder_weights, CNNEncoder(nef=256), source="image_encoder200.pth")
    msg = str(e.value)
    assert "emb_features.weight" in msg and "(32, 768, 1, 1)" in msg and "(256, 768, 1, 1)" in msg
    assert "nef" in msg


def test_convert_image_encoder_missing_and_extra_keys(encoder_weights):
    sd = dict(encoder_weights)
    del sd["Mixed_7b.branch3x3_2a.bn.running_mean"]
    with pytest.raises(ConversionError, match="Mixed_7b.branch3x3_2a.bn.running_mean"):
        convert_image_encoder(sd)
    sd = dict(encoder_weights, **{"Mixed_8a.conv.weight": np.zeros((1, 1, 1, 1), np.float32)})
    with pytest.raises(ConversionError, match="Mixed_8a.conv.weight"):
        convert_image_encoder(sd)


@pytest.fixture(scope="module")
def inception_case(parity_dir):
    case, arrays = load_case(parity_dir, "f_inception")
    return case, split_arrays(arrays)[0]


def test_fid_key_mapping_matches_fixture(inception_case):
    case, weights = inception_case
    mapping = case["fid_key_to_torchvision_key"]
    assert mapping and all(fid_key_to_torchvision_key(k) == v for k, v in mapping.items())
    assert fid_key_to_torchvision_key("fc.weight") == "fc.weight"
    with pytest.raises(ConversionError):
        fid_key_to_torchvision_key("blocks.4.0.conv.weight")
    # A pytorch-fid-keyed state dict converts to exactly the torchvision-keyed result.
    inverse = {v: k for k, v in mapping.items()}
    fid_sd = {inverse[k]: v for k, v in weights.items() if k in inverse}
    a = convert_fid_inception(fid_sd, FIDInceptionV3())
    b = convert_fid_inception(weights)
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def test_convert_torchvision_ignores_aux_but_not_fc(inception_case):
    _, weights = inception_case
    assert any(k.startswith("AuxLogits.") for k in weights)
    v = convert_torchvision_inception(weights, InceptionClassifier(num_classes=1000))
    assert v["params"]["fc"]["kernel"].shape == (2048, 1000)
    with pytest.raises(ConversionError, match="fc.weight"):
        convert_torchvision_inception(weights, InceptionClassifier(num_classes=1008))
    no_fc = {k: x for k, x in weights.items() if not k.startswith("fc.")}
    with pytest.raises(ConversionError, match="fc.weight"):
        convert_torchvision_inception(no_fc)


def test_tf_slim_pools_differ_only_where_padding_is_averaged():
    import jax
    import jax.numpy as jnp

    from attngan_jax.models.inception import InceptionE

    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 16))
    outs = {}
    for pool in ("avg", "avg_exclude_pad", "max"):
        m = InceptionE(pool)
        v = m.init(jax.random.key(1), x, False)
        outs[pool] = m.apply(v, x, False)
    # the pool branch is the last 192 channels; interior pixels agree between the two averages
    a, b = outs["avg"][..., -192:], outs["avg_exclude_pad"][..., -192:]
    assert jnp.allclose(a[:, 1:-1, 1:-1], b[:, 1:-1, 1:-1], atol=1e-5)
    assert not jnp.allclose(a[:, 0], b[:, 0], atol=1e-4)
    assert not jnp.allclose(outs["max"][..., -192:], b, atol=1e-4)


@pytest.mark.parametrize(
    "shape,window,strides,padding",
    [
        ((2, 15, 15, 4), (3, 3), (2, 2), ((0, 0), (0, 0))),
        ((2, 8, 9, 3), (3, 3), (1, 1), ((1, 1), (1, 1))),
        ((1, 10, 10, 2), (2, 3), (2, 1), ((0, 0), (0, 0))),
        ((2, 16, 14, 3), (3, 3), (2, 2), ((0, 0), (0, 0))),  # rows/columns no window reaches
        ((1, 9, 11, 2), (2, 2), (2, 2), ((0, 0), (0, 0))),
        ((1, 7, 8, 2), (1, 2), (3, 2), ((0, 0), (0, 0))),  # stride > window: untouched phases
    ],
)
def test_max_pool_matches_flax_values_and_gradient(shape, window, strides, padding):
    """layers.max_pool: flax's values, and its gradient goes to the first maximum (ties as torch)."""
    import flax.linen as nn

    from attngan_jax.models.layers import max_pool

    r = np.random.default_rng(0)
    x = jnp.asarray(np.maximum(np.round(r.normal(size=shape)), 0).astype(np.float32))  # many ties
    y_ref = nn.max_pool(x, window, strides, padding)
    np.testing.assert_array_equal(max_pool(x, window, strides, padding), y_ref)
    ct = jnp.asarray(r.normal(size=y_ref.shape).astype(np.float32))
    g_ref = jax.grad(lambda v: jnp.sum(nn.max_pool(v, window, strides, padding) * ct))(x)
    g_new = jax.jit(jax.grad(lambda v: jnp.sum(max_pool(v, window, strides, padding) * ct)))(x)
    np.testing.assert_allclose(g_new, g_ref, rtol=1e-6, atol=1e-6)
    assert float(jnp.sum(g_new != 0)) > 0


@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool3x3_same_matches_flax(include_pad):
    import flax.linen as nn

    from attngan_jax.models.layers import avg_pool3x3_same

    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 7, 9, 5)).astype(np.float32))

    def ref(v):
        return nn.avg_pool(v, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=include_pad)

    np.testing.assert_allclose(avg_pool3x3_same(x, include_pad), ref(x), rtol=1e-5, atol=1e-6)
    ct = jnp.asarray(np.random.default_rng(2).normal(size=x.shape).astype(np.float32))
    g_ref = jax.grad(lambda v: jnp.sum(ref(v) * ct))(x)
    g_new = jax.grad(lambda v: jnp.sum(avg_pool3x3_same(v, include_pad) * ct))(x)
    np.testing.assert_allclose(g_new, g_ref, rtol=1e-5, atol=1e-6)
    # The custom gradient is linear in the cotangent and reaches second order (jvp of the vjp).
    gg = jax.jvp(
        lambda c: jax.vjp(lambda v: avg_pool3x3_same(v, include_pad), x)[1](c)[0], (ct,), (ct,)
    )
    np.testing.assert_allclose(gg[1], g_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("train", [False, True])
def test_pool_branch_convolves_before_pooling(include_pad, train):
    """The pool branches' 1x1 conv before the 3x3 average pool: same outputs, gradients, stats."""
    from attngan_jax.models.inception import BasicConv2d, _conv_then_avg_pool
    from attngan_jax.models.layers import avg_pool3x3_same

    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(3, 6, 7, 16)).astype(np.float32))
    unit = BasicConv2d(5, 1)
    variables = unit.init(jax.random.key(0), x, False)
    variables = {  # unit-scale conv outputs, running statistics away from 0/1
        "params": jax.tree.map(lambda v: v * 10, variables["params"]),
        "batch_stats": {"bn": {"mean": jnp.full((5,), 0.2), "var": jnp.full((5,), 2.0)}},
    }
    mutable = ["batch_stats"] if train else False

    def pool_first(v, x):
        return unit.apply(v, avg_pool3x3_same(x, include_pad), train, mutable=mutable)

    def conv_first(v, x):
        return unit.apply(
            v,
            x,
            include_pad,
            train,
            mutable=mutable,
            method=lambda m, *a: _conv_then_avg_pool(m, *a),
        )

    ref, got = pool_first(variables, x), conv_first(variables, x)
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    assert float(jnp.std(jax.tree.leaves(ref)[0])) > 0.1  # not all clipped by the ReLU

    ct = jnp.asarray(rng.normal(size=(3, 6, 7, 5)).astype(np.float32))

    def loss(f):
        return lambda x: jnp.sum(jax.tree.leaves(f(variables, x))[0] * ct)

    np.testing.assert_allclose(
        jax.grad(loss(conv_first))(x), jax.grad(loss(pool_first))(x), rtol=1e-5, atol=1e-5
    )
