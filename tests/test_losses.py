"""Losses: DAMSM semantics against a per-caption loop, masking, padding, BCE/KL, D/G losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attngan_jax import losses as L
from attngan_jax.models.discriminator import Discriminator, init_discriminator

G1, G2, G3 = 4.0, 5.0, 10.0


@jax.jit
def _words_loss_nocls(feats, words, cap_lens):
    return L.words_loss(feats, words, cap_lens, None, G1, G2, G3)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _cos(a, b):
    return (a * b).sum(-1) / np.maximum(
        np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-8
    )


def _ce_pair(s, class_ids):
    s = s.copy()
    b = s.shape[0]
    if class_ids is not None:
        for i in range(b):
            for j in range(b):
                if i != j and class_ids[i] == class_ids[j]:
                    s[i, j] = -np.inf

    def ce(m):
        return np.mean([np.log(np.exp(m[i]).sum()) - m[i, i] for i in range(b)])

    return ce(s), ce(s.T)


def _words_loss_loop(feats, words, cap_lens, class_ids):
    """The original's ``words_loss``: a Python loop over captions, float64 numpy (ref. §8.4)."""
    b, h, w, d = feats.shape
    ctx_src = feats.reshape(b, h * w, d)  # (B, L, D)
    sims, maps = [], []
    for i in range(b):
        n = int(cap_lens[i])
        word = np.repeat(words[i : i + 1, :n], b, axis=0)  # (B, n, D): caption i for every image
        attn = np.einsum("bld,bnd->bln", ctx_src, word)  # (B, L, n)
        attn = _softmax(attn, -1)  # over words
        attn = _softmax(G1 * attn.transpose(0, 2, 1), -1)  # (B, n, L), over regions
        ctx = np.einsum("bnl,bld->bnd", attn, ctx_src)  # (B, n, D)
        r = _cos(word, ctx)  # (B, n)
        sims.append(np.log(np.exp(G2 * r).sum(1)))  # (B,)
        maps.append(attn[i].reshape(n, h, w))
    scores = G3 * np.stack(sims, 1)  # (B images, B captions)
    l0, l1 = _ce_pair(scores, class_ids)
    return l0, l1, maps


def _inputs(b=5, t=7, d=6, hw=4, seed=0):
    r = np.random.default_rng(seed)
    feats = r.normal(size=(b, hw, hw, d)).astype(np.float32)
    words = r.normal(size=(b, t, d)).astype(np.float32)
    cap_lens = np.array([7, 5, 5, 2, 1][:b])
    words[np.arange(t)[None, :] >= cap_lens[:, None]] = 0.0  # as the text encoder pads
    return feats, words, cap_lens


@pytest.mark.parametrize("class_ids", [None, np.array([3, 1, 3, 2, 1])])
def test_words_loss_matches_per_caption_loop(class_ids):
    feats, words, cap_lens = _inputs()
    l0, l1, att = L.words_loss(feats, words, cap_lens, class_ids, G1, G2, G3)
    r0, r1, maps = _words_loss_loop(
        feats.astype(np.float64), words.astype(np.float64), cap_lens, class_ids
    )
    np.testing.assert_allclose([l0, l1], [r0, r1], rtol=2e-5)
    assert att.shape == (5, 7, 4, 4)
    for i, m in enumerate(maps):
        np.testing.assert_allclose(att[i, : cap_lens[i]], m, atol=1e-6)
        assert np.all(np.asarray(att[i, cap_lens[i] :]) == 0)


def test_padded_words_do_not_change_words_loss():
    feats, words, cap_lens = _inputs()
    base = _words_loss_nocls(feats, words, cap_lens)
    junk = words.copy()
    pad = np.arange(7)[None, :] >= cap_lens[:, None]
    junk[pad] = np.random.default_rng(1).normal(size=(pad.sum(), 6)) * 10
    longer = np.concatenate([junk, np.ones((5, 3, 6), np.float32)], axis=1)  # T = 10
    for w in (junk, longer):
        other = _words_loss_nocls(feats, w, cap_lens)
        np.testing.assert_allclose(other[0], base[0], rtol=1e-6)
        np.testing.assert_allclose(other[1], base[1], rtol=1e-6)
        np.testing.assert_allclose(other[2][:, :7], base[2], atol=1e-7)
    # Zero padding gives finite gradients, and none flow into padded positions.
    g = jax.jit(jax.grad(lambda w: sum(_words_loss_nocls(feats, w, cap_lens)[:2])))(words)
    assert np.all(np.isfinite(g))
    assert np.all(np.asarray(g)[pad] == 0) and np.any(np.asarray(g)[~pad] != 0)


def test_sent_loss_matches_reference_formula():
    r = np.random.default_rng(2)
    code, sent = r.normal(size=(2, 5, 8))
    cls = np.array([0, 1, 0, 0, 2])
    ours = L.sent_loss(code, sent, cls, G3)
    ref = _ce_pair(G3 * _cos(code[:, None], sent[None]), cls)
    np.testing.assert_allclose(ours, ref, rtol=1e-5)


def test_class_masking_blocks_gradient_and_keeps_diagonal():
    s = jnp.asarray(np.random.default_rng(3).normal(size=(4, 4)), jnp.float32)
    cls = np.array([1, 2, 1, 1])
    grad = np.asarray(jax.grad(lambda x: sum(L.matching_cross_entropy(x, cls)))(s))
    masked = np.asarray(L.class_mask(jnp.asarray(cls)))
    assert masked.sum() == 6 and not masked.diagonal().any()
    assert np.all(grad[masked] == 0)
    assert np.all(grad[~masked] != 0)  # the diagonal and the other-class pairs learn
    # Everything in one class: only the diagonal is left, each CE is exactly 0.
    same = L.matching_cross_entropy(s, np.zeros(4, int))
    assert float(same[0]) == 0.0 and float(same[1]) == 0.0


def test_cosine_similarity_zero_vector_has_zero_gradient():
    x = jnp.zeros((3,))
    y = jnp.array([1.0, 2.0, 3.0])
    assert float(L.cosine_similarity(x, y)) == 0.0
    g = jax.grad(lambda a: L.cosine_similarity(a, y))(x)
    assert np.all(np.isfinite(g))


def test_kl_loss():
    assert float(L.kl_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)))) == 0.0
    mu, lv = jnp.full((1, 1), 2.0), jnp.full((1, 1), np.log(3.0))
    np.testing.assert_allclose(L.kl_loss(mu, lv), -0.5 * (1 + np.log(3.0) - 4 - 3), rtol=1e-6)


def test_bce_with_logits_matches_bce_on_probabilities():
    x = jnp.array([-3.0, -0.2, 0.0, 1.5, 4.0])
    p = 1 / (1 + np.exp(-np.asarray(x, np.float64)))
    for t in (0.0, 1.0):
        ref = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
        np.testing.assert_allclose(L.bce_with_logits(x, t), ref, rtol=1e-6)
    # Saturated D: finite, the log clamps at -100 as torch's BCELoss.
    assert float(L.bce_with_logits(jnp.array([1e4]), 0.0)) == 100.0
    assert np.isfinite(float(jax.grad(lambda z: L.bce_with_logits(z, 1.0))(jnp.array([-1e4]))[0]))


@pytest.fixture(scope="module")
def tiny_d():
    d = Discriminator(df_dim=2, emb_dim=4, image_size=64)
    v = init_discriminator(d, jax.random.key(0))
    r = np.random.default_rng(4)
    real, fake = r.uniform(-1, 1, size=(2, 3, 64, 64, 3)).astype(np.float32)
    sent = r.normal(size=(3, 4)).astype(np.float32)
    return d, v, real, fake, sent


def test_discriminator_loss_composition(tiny_d):
    d, v, real, fake, sent = tiny_d
    err, stats, lg = L.discriminator_loss(
        d.apply, v["params"], v["batch_stats"], real, fake, sent, True
    )
    assert lg["cond_wrong"].shape == (2,) and lg["cond_real"].shape == (3,)
    # The wrong pair is its own BN batch of B-1 samples: (real_code[:2], sent[1:]).
    code, _ = d.apply(v, real, True, mutable=["batch_stats"])
    wrong, _ = d.apply(v, code[:2], sent[1:], True, method="cond_logits", mutable=["batch_stats"])
    np.testing.assert_allclose(lg["cond_wrong"], wrong, rtol=1e-5, atol=1e-6)
    b = L.bce_with_logits
    want = (b(lg["uncond_real"], 1.0) + b(lg["cond_real"], 1.0)) / 2 + (
        b(lg["uncond_fake"], 0.0) + b(lg["cond_fake"], 0.0) + b(lg["cond_wrong"], 0.0)
    ) / 3
    np.testing.assert_allclose(err, want, rtol=1e-6)

    # Real and fake share the trunk and head as one interleaved batch (bn_groups=2): the same as
    # the original's separate calls, one after the other. Running stats: the trunk's BNs saw two
    # batches (real, fake), the joint conv's three.
    def separate(params):
        st = v["batch_stats"]
        codes = []
        for x in (real, fake):
            c, u = d.apply({"params": params, "batch_stats": st}, x, True, mutable=["batch_stats"])
            codes.append(c)
            st = u["batch_stats"]
        logits = []
        for c, s in ((codes[0], sent), (codes[1], sent), (codes[0][:2], sent[1:])):
            out, u = d.apply(
                {"params": params, "batch_stats": st},
                c,
                s,
                True,
                method="cond_logits",
                mutable=["batch_stats"],
            )
            logits.append(out)
            st = u["batch_stats"]
        unc = [d.apply({"params": params}, c, method="uncond_logits") for c in codes]
        errs = (b(unc[0], 1.0) + b(logits[0], 1.0)) / 2 + (
            b(unc[1], 0.0) + b(logits[1], 0.0) + b(logits[2], 0.0)
        ) / 3
        return errs, (st, logits, unc)

    (err_sep, (st, logits, unc)), g_sep = jax.value_and_grad(separate, has_aux=True)(v["params"])
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # noqa: E731
    for k, want_k in zip(("cond_real", "cond_fake", "cond_wrong"), logits, strict=True):
        close(lg[k], want_k)
    close(lg["uncond_real"], unc[0])
    close(lg["uncond_fake"], unc[1])
    close(err, err_sep)
    jax.tree_util.tree_map(
        lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6), stats, st
    )
    g_merged = jax.grad(
        lambda p: L.discriminator_loss(d.apply, p, v["batch_stats"], real, fake, sent, True)[0]
    )(v["params"])
    jax.tree_util.tree_map(
        lambda a, c: np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6), g_merged, g_sep
    )
    assert not np.allclose(stats["COND_DNET"]["jointConv"]["bn"]["mean"], 0.0)
    # Fake images are detached; the cond-only variant uses cond_real + (fake + wrong)/2.
    gf = jax.grad(
        lambda f: L.discriminator_loss(d.apply, v["params"], v["batch_stats"], real, f, sent, True)[
            0
        ]
    )(fake)
    assert np.all(np.asarray(gf) == 0)
    err_c, _, lgc = L.discriminator_loss(
        d.apply, v["params"], v["batch_stats"], real, fake, sent, uncond=False
    )
    want_c = b(lgc["cond_real"], 1.0) + (b(lgc["cond_fake"], 0.0) + b(lgc["cond_wrong"], 0.0)) / 2
    np.testing.assert_allclose(err_c, want_c, rtol=1e-6)


def test_generator_adversarial_loss_reaches_fake_images(tiny_d):
    d, v, _, fake, sent = tiny_d

    def f(x):
        return L.generator_adversarial_loss(d.apply, v["params"], v["batch_stats"], x, sent, True)

    loss, _, lg = f(fake)
    want = L.bce_with_logits(lg["cond"], 1.0) + L.bce_with_logits(lg["uncond"], 1.0)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    g = jax.grad(lambda x: f(x)[0])(fake)
    assert np.any(np.asarray(g) != 0)


def test_damsm_loss_is_lambda_weighted_sum():
    feats, words, cap_lens = _inputs()
    r = np.random.default_rng(5)
    code, sent = r.normal(size=(2, 5, 6)).astype(np.float32)
    cls = np.array([0, 1, 0, 2, 3])
    total, parts = L.damsm_loss(feats, code, words, sent, cap_lens, cls, G1, G2, G3, 5.0)
    w0, w1, _ = L.words_loss(feats, words, cap_lens, cls, G1, G2, G3)
    s0, s1 = L.sent_loss(code, sent, cls, G3)
    np.testing.assert_allclose(parts["w_loss"], 5.0 * (w0 + w1), rtol=1e-6)
    np.testing.assert_allclose(parts["s_loss"], 5.0 * (s0 + s1), rtol=1e-6)
    np.testing.assert_allclose(total, parts["w_loss"] + parts["s_loss"], rtol=1e-6)


def test_damsm_loss_hard_negatives():
    """Mirrored-caption negatives (not in the original) join the image->text softmax only."""
    feats, words, cap_lens = _inputs()
    r = np.random.default_rng(6)
    code, sent, hsent = r.normal(size=(3, 5, 6)).astype(np.float32)
    hwords = r.normal(size=words.shape).astype(np.float32)
    cls = np.array([0, 1, 0, 2, 3])
    base, bparts = L.damsm_loss(feats, code, words, sent, cap_lens, cls, G1, G2, G3, 5.0)
    none = np.zeros(5, bool)
    t0, _ = L.damsm_loss(
        feats, code, words, sent, cap_lens, cls, G1, G2, G3, 5.0, hwords, hsent, none
    )
    np.testing.assert_allclose(t0, base, rtol=1e-5)  # no valid row: the original's loss
    valid = np.array([True, False, True, True, False])
    total, parts = L.damsm_loss(
        feats, code, words, sent, cap_lens, cls, G1, G2, G3, 5.0, hwords, hsent, valid
    )
    # Reference: the sentence term by hand, image b's softmax over B captions + its hard one.
    sc = G3 * _cos(code[:, None], sent[None])
    for i in range(5):
        for j in range(5):
            if i != j and cls[i] == cls[j]:
                sc[i, j] = -np.inf
    hs = G3 * _cos(code, hsent)
    rows = [np.append(sc[i], hs[i]) if valid[i] else sc[i] for i in range(5)]
    s0 = np.mean([np.log(np.exp(rw).sum()) - sc[i, i] for i, rw in enumerate(rows)])
    s1 = np.mean([np.log(np.exp(sc[:, i]).sum()) - sc[i, i] for i in range(5)])
    np.testing.assert_allclose(parts["s_loss"], 5.0 * (s0 + s1), rtol=1e-5)
    assert parts["w_loss"] > bparts["w_loss"]  # an extra negative can only add to the CE
    # The word-level hard score of image b is its own row of word_level_scores.
    ws, _ = L.word_level_scores(feats, hwords, cap_lens, G1, G2, G3)
    own, _ = L.word_level_scores(feats[1:2], hwords[1:2], cap_lens[1:2], G1, G2, G3)
    np.testing.assert_allclose(own[0, 0], ws[1, 1], rtol=1e-5)


def test_discriminator_loss_hard_captions(tiny_d):
    d, v, real, fake, sent = tiny_d
    hard = sent[::-1].copy()
    args = (d.apply, v["params"], v["batch_stats"], real, fake, sent, True)
    err, _, _ = L.discriminator_loss(*args)
    err0, _, lg0 = L.discriminator_loss(*args, hard_sent_emb=hard, hard_valid=np.zeros(3, bool))
    np.testing.assert_allclose(err0, err, rtol=1e-6)  # no valid row: no term
    valid = np.array([True, False, True])
    err1, st1, lg = L.discriminator_loss(*args, hard_sent_emb=hard, hard_valid=valid)
    per = np.asarray(L.bce_terms(lg["cond_hard"], 0.0))
    np.testing.assert_allclose(err1, err + per[valid].mean() / 3, rtol=1e-5)
    assert lg["cond_hard"].shape == (3,)
    with pytest.raises(ValueError, match="hard_valid"):
        L.discriminator_loss(*args, hard_sent_emb=hard)


def test_damsm_loss_two_kinds_of_hard_captions():
    """K hard captions per image are K extra columns: stacked (K, B, ...) = the hand reference."""
    feats, words, cap_lens = _inputs()
    r = np.random.default_rng(7)
    code, sent = r.normal(size=(2, 5, 6)).astype(np.float32)
    hsent = r.normal(size=(2, 5, 6)).astype(np.float32)
    hwords = r.normal(size=(2, *words.shape)).astype(np.float32)
    valid = np.array([[True, False, True, True, False], [True, True, False, True, False]])
    one, _ = L.damsm_loss(
        feats, code, words, sent, cap_lens, None, G1, G2, G3, 1.0, hwords[0], hsent[0], valid[0]
    )
    stacked1, _ = L.damsm_loss(
        feats, code, words, sent, cap_lens, None, G1, G2, G3, 1.0, hwords[:1], hsent[:1], valid[:1]
    )
    np.testing.assert_allclose(stacked1, one, rtol=1e-6)  # K = 1 stacked = the (B, ...) form
    _, parts = L.damsm_loss(
        feats, code, words, sent, cap_lens, None, G1, G2, G3, 1.0, hwords, hsent, valid
    )
    sc = G3 * _cos(code[:, None], sent[None])
    hs = G3 * _cos(code[None], hsent)  # (K, B)
    rows = [np.concatenate([sc[i], hs[:, i][valid[:, i]]]) for i in range(5)]
    s0 = np.mean([np.log(np.exp(rw).sum()) - sc[i, i] for i, rw in enumerate(rows)])
    s1 = np.mean([np.log(np.exp(sc[:, i]).sum()) - sc[i, i] for i in range(5)])
    np.testing.assert_allclose(parts["s_loss"], s0 + s1, rtol=1e-5)
    hw, hs2 = L.hard_caption_scores(feats, code, hwords, hsent, cap_lens, valid, G1, G2, G3)
    assert hw.shape == hs2.shape == (5, 2)
    own, _ = L.word_level_scores(feats[3:4], hwords[1, 3:4], cap_lens[3:4], G1, G2, G3)
    np.testing.assert_allclose(hw[3, 1], own[0, 0], rtol=1e-5)
    assert np.isneginf(hw[4]).all() and np.isneginf(hs2[2, 1])


def test_discriminator_loss_kinds_and_duplicates(tiny_d):
    d, v, real, fake, sent = tiny_d
    args = (d.apply, v["params"], v["batch_stats"], real, fake, sent, True)
    hard = np.stack([sent[::-1], sent[[1, 2, 0]]])  # (2, B, nef)
    valid = np.array([[True, False, True], [True, True, True]])
    err, _, _ = L.discriminator_loss(*args)
    err1, _, lg = L.discriminator_loss(*args, hard_sent_emb=hard, hard_valid=valid)
    per = np.asarray(L.bce_terms(lg["cond_hard"], 0.0))  # (K*B,) kind-major
    assert lg["cond_hard"].shape == (6,)
    np.testing.assert_allclose(err1, err + per[valid.ravel()].mean() / 3, rtol=1e-5)
    dup = np.asarray(real)[:, ::-1]
    err2, _, lg2 = L.discriminator_loss(*args, dup_images=dup)
    term = (L.bce_with_logits(lg2["cond_dup"], 0.0) + L.bce_with_logits(lg2["uncond_dup"], 0.0)) / 2
    np.testing.assert_allclose(err2, err + term / 3, rtol=1e-5)
