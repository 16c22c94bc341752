"""RNNEncoder: parameter counts, packed semantics vs a NumPy LSTM, dropout, converter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from paths import state_dict_section

from attngan_jax.convert.common import ConversionError
from attngan_jax.convert.text_encoder import (
    convert_text_encoder,
    expected_variables,
    text_encoder_from_state_dict,
)
from attngan_jax.models.text_encoder import RNNEncoder, RNNEncoderBirds, RNNEncoderCOCO

V, E, D = 30, 12, 10  # vocab, embedding, output (5 units per direction)


def _count(module) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(expected_variables(module)["params"]))


def test_parameter_counts_match_reference_tables():
    assert _count(RNNEncoderBirds()) == 2_075_320
    assert _count(RNNEncoderCOCO()) == 8_629_420


def _torch_state_dict(seed=0, vocab=V, embed=E, hidden=D // 2):
    rng = np.random.default_rng(seed)
    u = lambda *s: rng.uniform(-0.5, 0.5, s).astype(np.float32)  # noqa: E731
    sd = {"encoder.weight": u(vocab, embed)}
    for sfx in ("", "_reverse"):
        sd[f"rnn.weight_ih_l0{sfx}"] = u(4 * hidden, embed)
        sd[f"rnn.weight_hh_l0{sfx}"] = u(4 * hidden, hidden)
        sd[f"rnn.bias_ih_l0{sfx}"] = u(4 * hidden)
        sd[f"rnn.bias_hh_l0{sfx}"] = u(4 * hidden)
    return sd


def _np_lstm(xs, w_ih, w_hh, b_ih, b_hh):
    """torch.nn.LSTM cell over xs (n, E) from zero state, rows of W ordered i, f, g, o."""
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    h = np.zeros(w_hh.shape[1], np.float64)
    c = np.zeros_like(h)
    out = []
    for x in xs:
        i, f, g, o = np.split(w_ih @ x + b_ih + w_hh @ h + b_hh, 4)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        out.append(h)
    return np.stack(out)


def _np_encoder(sd, captions, lens):
    """Reference: each caption run on its own (packed semantics), zero-padded to L."""
    b, length = captions.shape
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    hd = sd["rnn.weight_hh_l0"].shape[1]
    words = np.zeros((b, length, 2 * hd))
    sent = np.zeros((b, 2 * hd))
    for i in range(b):
        x = sd["encoder.weight"][captions[i, : lens[i]]]
        fwd = _np_lstm(
            x, *(sd[f"rnn.{n}_l0"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        )
        bwd = _np_lstm(
            x[::-1],
            *(sd[f"rnn.{n}_l0_reverse"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
        )[::-1]
        words[i, : lens[i]] = np.concatenate([fwd, bwd], axis=1)
        sent[i] = np.concatenate([fwd[-1], bwd[0]])
    return words, sent


def _batch(lens, length, seed=1):
    rng = np.random.default_rng(seed)
    caps = rng.integers(1, V, (len(lens), length))
    caps[np.arange(length)[None, :] >= np.asarray(lens)[:, None]] = 0
    return caps, np.asarray(lens)


@pytest.fixture(scope="module")
def encoder():
    module = RNNEncoder(vocab_size=V, embed_dim=E, hidden_dim=D)
    sd = _torch_state_dict()
    variables = convert_text_encoder(sd, module)
    apply = jax.jit(lambda c, n: module.apply(variables, c, n))
    return module, sd, variables, apply


def test_matches_numpy_lstm_with_packed_semantics(encoder):
    _, sd, _, apply = encoder
    caps, lens = _batch([7, 3, 5, 1], 9)  # unsorted lengths, L > max(len)
    words, sent = apply(jnp.asarray(caps), jnp.asarray(lens))
    ref_words, ref_sent = _np_encoder(sd, caps, lens)
    assert words.shape == (4, 9, D) and sent.shape == (4, D)
    np.testing.assert_allclose(words, ref_words, atol=2e-6)
    np.testing.assert_allclose(sent, ref_sent, atol=2e-6)
    beyond = np.arange(9)[None, :] >= lens[:, None]
    assert np.all(np.asarray(words)[beyond] == 0.0)  # exactly zero after each caption


def test_independent_of_padding_content_and_length(encoder):
    _, _, _, apply = encoder
    caps, lens = _batch([6, 4, 2], 6)
    w1, s1 = apply(jnp.asarray(caps), jnp.asarray(lens))
    noisy = np.where(caps == 0, 17, caps)  # garbage tokens after each length
    longer = np.concatenate([noisy, np.full((3, 5), 9)], axis=1)  # L = 11 instead of 6
    w2, s2 = apply(jnp.asarray(longer), jnp.asarray(lens))
    np.testing.assert_array_equal(np.asarray(w2)[:, :6], w1)
    assert np.all(np.asarray(w2)[:, 6:] == 0.0)
    np.testing.assert_array_equal(s2, s1)


def test_dropout_uses_the_dropout_rng(encoder):
    module, _, variables, apply = encoder
    caps, lens = _batch([5, 5], 5)
    caps, lens = jnp.asarray(caps), jnp.asarray(lens)

    @jax.jit
    def train_fwd(key):
        return module.apply(variables, caps, lens, train=True, rngs={"dropout": key})

    a, b, c = (
        train_fwd(jax.random.key(1)),
        train_fwd(jax.random.key(1)),
        train_fwd(jax.random.key(2)),
    )
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], c[0])
    assert not np.allclose(a[0], apply(caps, lens)[0])


def test_init_ranges():
    module = RNNEncoder(vocab_size=V, embed_dim=E, hidden_dim=D)
    p = module.init(jax.random.key(0), jnp.ones((1, 3), jnp.int32), jnp.array([3]))["params"]
    emb = np.asarray(p["encoder"]["embedding"])
    assert emb.shape == (V, E) and np.abs(emb).max() <= 0.1 and np.abs(emb).max() > 0.09
    bound = 1 / np.sqrt(D // 2)
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        w = np.asarray(p["rnn"][name])
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound


def test_converter_errors_name_key_and_shapes():
    module = RNNEncoder(vocab_size=V, embed_dim=E, hidden_dim=D)
    sd = _torch_state_dict(vocab=V + 7)
    with pytest.raises(ConversionError) as e:
        convert_text_encoder(sd, module, source="te.pth")
    msg = str(e.value)
    assert "encoder.weight" in msg and f"({V + 7}, {E})" in msg and f"({V}, {E})" in msg
    assert "vocabulary" in msg

    sd = _torch_state_dict()
    del sd["rnn.bias_hh_l0_reverse"]
    with pytest.raises(ConversionError, match="rnn.bias_hh_l0_reverse"):
        convert_text_encoder(sd, module)

    sd = _torch_state_dict()
    sd["rnn.weight_ih_l1"] = sd["rnn.weight_ih_l0"]  # a second layer the module does not have
    with pytest.raises(ConversionError, match="rnn.weight_ih_l1"):
        convert_text_encoder(sd, module)


def test_module_from_state_dict():
    m = text_encoder_from_state_dict(_torch_state_dict())
    assert (m.vocab_size, m.embed_dim, m.hidden_dim) == (V, E, D)


@pytest.mark.parametrize(
    "title,module",
    [("birds text_encoder", RNNEncoderBirds()), ("coco text_encoder", RNNEncoderCOCO())],
)
def test_converts_release_key_layout(title, module):
    sd = state_dict_section(title)
    variables = convert_text_encoder(sd, module, source=title)
    n = sum(v.size for v in jax.tree.leaves(variables["params"]))
    assert n == sum(v.size for v in sd.values()) == _count(module)
