"""Generator, word/region attention and the generator converter."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from paths import require_shared, state_dict_section

from attngan_jax.convert.common import ConversionError
from attngan_jax.convert.generator import (
    convert_generator,
    expected_variables,
    generator_from_cfg,
)
from attngan_jax.losses import pairwise_word_region_attention
from attngan_jax.models.attention import GlobalAttentionGeneral
from attngan_jax.models.generator import (
    Generator,
    GeneratorBirds,
    GeneratorCOCO,
    GeneratorDCGANBirds,
    GeneratorTiny,
    perturb_batchnorm_scales,
)
from attngan_jax.parity import default_dir, load_case, split_arrays


def _mask(lens, t):
    return np.arange(t)[None, :] >= np.asarray(lens)[:, None]  # True at padding


def _count(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(expected_variables(module)["params"]))


def test_parameter_counts_match_reference_tables():
    assert _count(GeneratorBirds()) == 7_084_592
    assert _count(GeneratorCOCO()) == 13_811_456
    assert _count(GeneratorDCGANBirds()) == 6_638_960


# ----------------------------------------------------------------------------- attention


def _attention(faithful, lens, b=3, hw=4, t=6, idf=5, cdf=7, seed=0):
    rng = np.random.default_rng(seed)
    h = jnp.asarray(rng.normal(size=(b, hw, hw, idf)), jnp.float32)
    words = rng.normal(size=(b, t, cdf)).astype(np.float32)
    mask = _mask(lens, t)
    words[mask] = 0.0  # as the text encoder gives
    att = GlobalAttentionGeneral(idf, cdf, faithful_mask=faithful)
    variables = att.init(jax.random.key(0), h, jnp.asarray(words), jnp.asarray(mask))
    fwd = jax.jit(lambda h, w, m: att.apply(variables, h, w, m))
    return fwd(h, jnp.asarray(words), jnp.asarray(mask)), (h, words, mask, variables)


def test_fixed_mask_never_attends_padding():
    (ctx, attn), (_, _, mask, _) = _attention(False, [6, 4, 2])
    attn = np.asarray(attn)  # (B, T, H, W)
    assert ctx.shape == (3, 4, 4, 5) and attn.shape == (3, 6, 4, 4)
    assert np.all(attn[mask] == 0.0)
    np.testing.assert_allclose(attn.sum(1), 1.0, atol=1e-6)


def test_faithful_mask_reproduces_torch_repeat():
    lens = [6, 4, 2]
    (ctx, attn), (h, words, mask, variables) = _attention(True, lens)
    b, q, t = 3, 16, 6  # Q % B != 0: the misalignment changes with b
    kernel = np.asarray(variables["params"]["conv_context"]["kernel"])[0, 0]  # (cdf, idf)
    source = words.astype(np.float64) @ kernel  # (B, T, idf)
    scores = np.einsum("bqd,btd->bqt", np.asarray(h, np.float64).reshape(b, q, -1), source)
    flat = scores.reshape(b * q, t)
    flat[np.tile(mask, (q, 1))] = -np.inf  # torch: attn.masked_fill_(mask.repeat(queryL, 1), -inf)
    ref = np.exp(flat - flat.max(1, keepdims=True))
    ref = (ref / ref.sum(1, keepdims=True)).reshape(b, q, t)
    np.testing.assert_allclose(np.asarray(attn).reshape(b, t, q).transpose(0, 2, 1), ref, atol=1e-6)
    ref_ctx = np.einsum("bqt,btd->bqd", ref, source).reshape(b, 4, 4, -1)
    np.testing.assert_allclose(ctx, ref_ctx, atol=1e-5)
    # Some rows of sample 0 (full length) are masked with another sample's padding.
    assert np.any(np.asarray(attn)[0, 5] == 0.0)


def test_faithful_and_fixed_masks_agree_only_for_equal_lengths():
    mixed_f, _ = _attention(True, [6, 4, 2])
    mixed_x, _ = _attention(False, [6, 4, 2])
    assert not np.allclose(mixed_f[1], mixed_x[1], atol=1e-3)
    equal_f, _ = _attention(True, [4, 4, 4])
    equal_x, _ = _attention(False, [4, 4, 4])
    np.testing.assert_array_equal(equal_f[1], equal_x[1])
    np.testing.assert_array_equal(equal_f[0], equal_x[0])


def _np_func_attention(query, context, gamma1):
    """Transcription of GlobalAttention.func_attention in NumPy (NHWC in, (B, n, ...) out)."""
    b, ih, iw, nef = context.shape
    ctx_t = context.reshape(b, ih * iw, nef)  # contextT (B, R, nef)
    attn = ctx_t @ query.transpose(0, 2, 1)  # (B, R, n)
    attn = np.exp(attn - attn.max(-1, keepdims=True))
    attn = attn / attn.sum(-1, keepdims=True)
    attn = attn.transpose(0, 2, 1) * gamma1  # (B, n, R)
    attn = np.exp(attn - attn.max(-1, keepdims=True))
    attn = attn / attn.sum(-1, keepdims=True)
    return attn @ ctx_t, attn.reshape(b, -1, ih, iw)


def test_pairwise_word_region_attention_matches_reference_and_word_mask():
    """pairwise_word_region_attention: each (image, caption) pair is the original func_attention."""
    rng = np.random.default_rng(3)
    query = rng.normal(size=(3, 5, 8))  # words of 3 captions
    context = rng.normal(size=(3, 4, 4, 8))  # regions of 3 images
    fn = jax.jit(pairwise_word_region_attention, static_argnums=3)
    words, regions = jnp.asarray(query, jnp.float32), jnp.asarray(context, jnp.float32)
    for lens in ([5, 5, 5], [5, 3, 2]):  # no padding (the original), then padded captions
        wc, attn = fn(regions, words, jnp.asarray(~_mask(lens, 5)), 4.0)
        assert wc.shape == (3, 3, 5, 8) and attn.shape == (3, 3, 5, 16)
        for b in range(3):  # image b, caption i: the original run on the trimmed caption
            for i, n in enumerate(lens):
                r_wc, r_attn = _np_func_attention(query[i : i + 1, :n], context[b : b + 1], 4.0)
                np.testing.assert_allclose(wc[b, i, :n], r_wc[0], atol=1e-5)
                np.testing.assert_allclose(attn[b, i, :n], r_attn[0].reshape(n, 16), atol=1e-6)


# ----------------------------------------------------------------------------- generator


def _inputs(m, b=2, t=5, lens=(5, 3), seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    mask = _mask(lens, t)
    words = np.array(f(b, t, m.emb_dim))
    words[mask] = 0.0
    return f(b, m.z_dim), f(b, m.emb_dim), jnp.asarray(words), jnp.asarray(mask)


TINY = GeneratorTiny()  # 3 stages, r_num 1; the variants below use subsets of its variables
EPS = jnp.zeros((2, TINY.condition_dim))


@functools.cache
def _forward(module, train=False, with_eps=True):
    """One jitted forward per (module, mode): tests share compilations."""

    def fwd(variables, args, eps, key):
        kw = {"eps": eps} if with_eps else {"rngs": {"ca": key}}
        if train:
            return module.apply(variables, *args, train=True, mutable=["batch_stats"], **kw)
        return module.apply(variables, *args, train=False, **kw)

    return jax.jit(fwd)


def _run(module, variables, args, train=False, eps=EPS, key=None):
    return _forward(module, train, key is None)(variables, args, eps, key)


@pytest.fixture(scope="module")
def tiny_vars():
    args = _inputs(TINY)
    return jax.jit(lambda a: TINY.init(jax.random.key(0), *a, train=False, eps=EPS))(args)


def _subset(variables, module):
    """Variables of a smaller variant (fewer stages, or the DCGAN head) from TINY's."""
    keep = {"ca_net", "h_net1", *(f"h_net{i}" for i in range(2, module.num_stages + 1))}
    heads = {f"img_net{i}" for i in range(1, module.num_stages + 1)}
    out = {}
    for col, tree in variables.items():
        sub = {k: v for k, v in tree.items() if k in keep or (k in heads and not module.dcgan)}
        if module.dcgan and f"img_net{module.num_stages}" in tree:
            sub["img_net"] = tree[f"img_net{module.num_stages}"]
        out[col] = sub
    return out


@pytest.mark.parametrize(
    "module",
    [TINY.clone(num_stages=1), TINY.clone(num_stages=2), TINY, TINY.clone(dcgan=True)],
    ids=["1stage", "2stages", "3stages", "dcgan"],
)
def test_tiny_shapes_eval_and_train(module, tiny_vars):
    variables = _subset(tiny_vars, module)
    args = _inputs(module)
    out = _run(module, variables, args)
    out_t, upd = _run(module, variables, args, train=True)
    sizes = [64 * 2**i for i in range(module.num_stages)]
    img_sizes = sizes[-1:] if module.dcgan else sizes
    assert [x.shape for x in out.fake_imgs] == [(2, s, s, 3) for s in img_sizes]
    assert [a.shape for a in out.att_maps] == [(2, 5, s, s) for s in sizes[:-1]]
    assert out.mu.shape == out.logvar.shape == out.c_code.shape == (2, module.condition_dim)
    assert all(np.abs(np.asarray(x)).max() <= 1.0 for x in out.fake_imgs)
    for a in out.att_maps:
        np.testing.assert_allclose(np.asarray(a).sum(1), 1.0, atol=1e-5)
    assert [x.shape for x in out_t.fake_imgs] == [x.shape for x in out.fake_imgs]
    assert not np.allclose(out_t.fake_imgs[-1], out.fake_imgs[-1])  # batch vs running statistics
    changed = jax.tree.map(
        lambda a, b: not np.allclose(a, b), upd["batch_stats"], variables["batch_stats"]
    )
    assert all(jax.tree.leaves(changed))  # every running statistic moved


def test_dcgan_head_is_the_last_stage_head(tiny_vars):
    dcgan = TINY.clone(dcgan=True)
    args = _inputs(TINY)
    a = _run(TINY, tiny_vars, args)
    b = _run(dcgan, _subset(tiny_vars, dcgan), args)
    assert len(b.fake_imgs) == 1
    np.testing.assert_array_equal(a.fake_imgs[2], b.fake_imgs[0])
    np.testing.assert_array_equal(a.att_maps[1], b.att_maps[1])


def test_ca_noise_determinism_and_formula(tiny_vars):
    module = TINY.clone(num_stages=1)
    variables, args = _subset(tiny_vars, module), _inputs(module)
    a, b, c = (_run(module, variables, args, key=jax.random.key(k)) for k in (5, 5, 6))
    np.testing.assert_array_equal(a.fake_imgs[0], b.fake_imgs[0])
    np.testing.assert_array_equal(a.c_code, b.c_code)
    assert not np.allclose(a.c_code, c.c_code)
    np.testing.assert_array_equal(a.mu, c.mu)
    eps = jnp.full((2, module.condition_dim), 0.5)
    d = _run(module, variables, args, eps=eps)
    np.testing.assert_allclose(d.c_code, 0.5 * np.exp(0.5 * np.asarray(d.logvar)) + d.mu, rtol=1e-6)


def test_fixed_mask_variant_differs_with_mixed_lengths_only(tiny_vars):
    faithful = TINY.clone(num_stages=2)
    fixed = faithful.clone(faithful_mask=False)
    variables = _subset(tiny_vars, faithful)
    for lens, same in (((5, 3), False), ((4, 4), True)):
        args = _inputs(faithful, lens=lens)
        a, b = _run(faithful, variables, args), _run(fixed, variables, args)
        assert np.array_equal(a.fake_imgs[1], b.fake_imgs[1]) == same
        np.testing.assert_array_equal(a.fake_imgs[0], b.fake_imgs[0])  # stage 1 has no attention


def test_init_follows_weights_init(tiny_vars):
    variables = tiny_vars
    k = np.asarray(variables["params"]["h_net2"]["upsample"]["conv"]["kernel"])  # (3, 3, 8, 8)
    flat = k.reshape(-1, k.shape[-1])  # (kh·kw·in, out): orthonormal columns
    np.testing.assert_allclose(flat.T @ flat, np.eye(k.shape[-1]), atol=1e-5)
    assert np.all(np.asarray(variables["params"]["ca_net"]["fc"]["bias"]) == 0.0)
    new = jax.jit(perturb_batchnorm_scales)(variables["params"], jax.random.key(1))
    scales = np.concatenate(
        [
            np.ravel(v)
            for p, v in jax.tree_util.tree_leaves_with_path(new)
            if "scale" in jax.tree_util.keystr(p)
        ]
    )
    assert (
        np.all(scales != 1.0)
        and abs(scales.std() - 0.02) < 0.005
        and abs(scales.mean() - 1) < 0.005
    )
    np.testing.assert_array_equal(new["h_net2"]["upsample"]["conv"]["kernel"], k)


# ----------------------------------------------------------------------------- converter


@pytest.mark.parametrize(
    "title,module",
    [
        ("birds netG", GeneratorBirds()),
        ("coco netG", GeneratorCOCO()),
        ("birds AttnDCGAN netG", GeneratorDCGANBirds()),
    ],
)
def test_converts_release_key_layouts(title, module):
    sd = state_dict_section(title)
    variables = convert_generator(sd, module, source=title)
    n = sum(v.size for v in jax.tree.leaves(variables["params"]))
    assert n == _count(module)


def test_wrong_gf_dim_names_key_shapes_and_cause():
    with pytest.raises(ConversionError) as e:
        convert_generator(
            state_dict_section("birds netG"), GeneratorCOCO(), source="bird_AttnGAN2.pth"
        )
    msg = str(e.value)
    assert "h_net1.fc.0.weight" in msg and "(16384, 200)" in msg and "(24576, 200)" in msg
    assert "gf_dim" in msg and "bird_AttnGAN2.pth" in msg


@pytest.fixture(scope="module")
def fixture_weights():
    case, arrays = load_case(require_shared(default_dir(), "the parity fixtures"), "c_g_net")
    return case, split_arrays(arrays)[0]


def test_stage_count_mismatch(fixture_weights):
    case, sd = fixture_weights
    cfg = dict(case["case_config"])
    full = convert_generator(sd, cfg)
    two = {k: v for k, v in sd.items() if not k.startswith(("h_net3.", "img_net3."))}
    v2 = convert_generator(two, dict(cfg, BRANCH_NUM=2))
    np.testing.assert_array_equal(
        v2["params"]["h_net2"]["att"]["conv_context"]["kernel"],
        full["params"]["h_net2"]["att"]["conv_context"]["kernel"],
    )
    with pytest.raises(ConversionError, match=r"missing key 'h_net3\.att\.conv_context\.weight'"):
        convert_generator(two, cfg)
    with pytest.raises(ConversionError, match="not used"):
        convert_generator(sd, dict(cfg, BRANCH_NUM=2))
    with pytest.raises(ConversionError, match="residual"):
        convert_generator(sd, dict(cfg, R_NUM=1))


def test_generator_from_nested_cfg(fixture_weights):
    case, _ = fixture_weights
    g = generator_from_cfg({**case["cfg"], "GAN": {**case["cfg"]["GAN"], "B_DCGAN": True}})
    gan = case["cfg"]["GAN"]
    assert isinstance(g, Generator) and g.dcgan
    assert (g.gf_dim, g.r_num, g.z_dim) == (gan["GF_DIM"], gan["R_NUM"], gan["Z_DIM"])
    assert g.num_stages == case["cfg"]["TREE"]["BRANCH_NUM"]
    assert g.emb_dim == case["cfg"]["TEXT"]["EMBEDDING_DIM"]


@pytest.mark.parametrize(
    "shape",
    [
        (2, 16, 16, 8, 6),
        (1, 5, 7, 3, 4),
        (2, 4, 4, 6, 10),
        (1, 4, 4, 512, 256),  # direct: conv2d's matmul gradients on CPU (8×8 out, 2^20+ kernel)
    ],
)
def test_upsample_conv_phases_equal_direct_values_and_gradients(shape):
    """The 2×2 phase form of nearest ×2 + conv3x3 = the direct form, values and both gradients."""
    from attngan_jax.models.layers import upsample_conv3x3

    b, h, w, ci, co = shape
    kx, kw, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (b, h, w, ci))
    k = jax.random.normal(kw, (3, 3, ci, co)) / np.sqrt(9 * ci)  # outputs ~N(0, 1)
    g = jax.random.normal(kg, (b, 2 * h, 2 * w, co))  # a cotangent with no symmetry

    def loss(x, k, method):
        return jnp.sum(upsample_conv3x3(x, k, method) * g)

    y_direct = upsample_conv3x3(x, k, "direct")
    assert y_direct.shape == (b, 2 * h, 2 * w, co)
    np.testing.assert_allclose(upsample_conv3x3(x, k, "phases"), y_direct, atol=2e-5)
    gd = jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)(x, k, "direct")
    gp = jax.jit(jax.grad(loss, (0, 1)), static_argnums=2)(x, k, "phases")
    for a, r in zip(gp, gd):
        np.testing.assert_allclose(a, r, atol=1e-4 * float(np.max(np.abs(r))))
    with pytest.raises(ValueError, match="direct"):
        upsample_conv3x3(x, k, "fast")


def test_upblock_methods_share_parameters_and_outputs():
    from attngan_jax.models.generator import UpBlock

    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 12))
    blocks = {m: UpBlock(5, upsample_method=m) for m in ("direct", "phases", "auto")}
    vs = {m: blk.init(jax.random.key(2), x, False) for m, blk in blocks.items()}
    ref = vs["direct"]
    assert ref["params"]["conv"]["kernel"].shape == (3, 3, 12, 10)
    for m, v in vs.items():  # same tree and the same initial values (same rng path)
        jax.tree.map(np.testing.assert_array_equal, v, ref)
        y = blocks[m].apply(ref, x, False)
        np.testing.assert_allclose(y, blocks["direct"].apply(ref, x, False), atol=1e-5)
