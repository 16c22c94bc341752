"""CLIPTextEncoder: vocabulary ids -> CLIP tokens -> per-word and sentence features, against models/clip.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attngan_jax.models import clip as clip_lib
from attngan_jax.models import factory
from attngan_jax.models.clip_text_encoder import CLIPTextEncoder, assemble, piece_table
from attngan_jax.models.clip_tokenizer import default_tokenizer, tokenize

WORDS = ["<end>", "a", "red", "circle", "above", "triangular", "photosynthesis", "the", "of"]
SPEC = factory.CLIP_TINY_TEXT


def _encoder(train_tower=False):
    enc = CLIPTextEncoder(clip=SPEC, vocab_size=len(WORDS), emb_dim=16, train_tower=train_tower)
    caps = jnp.ones((2, 8), jnp.int32)
    v = enc.init(jax.random.key(0), caps, jnp.array([8, 8]))
    params = dict(v["params"])
    params["vocab_pieces"] = jnp.asarray(piece_table(WORDS, 8))
    # random heads' biases are zero: perturb them so the check covers them
    for head in ("word_head", "sent_head"):
        params[head] = {**params[head], "bias": jnp.linspace(-1, 1, 16)}
    return enc, {"params": params}


def test_piece_table_holds_each_words_bpe_ids():
    table = piece_table(WORDS, 8)
    tok = default_tokenizer()
    assert table.shape == (len(WORDS), 8) and table.dtype == np.float32
    assert np.all(table[0] == -1)  # padding has no pieces
    for i, w in enumerate(WORDS[1:], 1):
        ids = tok.encode(w)
        assert table[i, : len(ids)].tolist() == ids and np.all(table[i, len(ids) :] == -1)
    assert len(tok.encode("photosynthesis")) > 1  # the test covers multi-piece words
    # a word with more pieces than the table keeps its last ones
    assert piece_table(WORDS, 1)[6, 0] == tok.encode("photosynthesis")[-1]


def test_assembled_tokens_equal_the_tokenizers_including_truncation():
    tok = default_tokenizer()
    table = jnp.asarray(piece_table(WORDS, 8))
    long = [6] * 40  # 40 x 'photosynthesis' > 75 pieces: cut as open_clip cuts
    caps = np.zeros((3, 40), np.int32)
    caps[0, :6] = [1, 2, 3, 4, 1, 5]
    caps[1, :2] = [7, 6]
    caps[2] = long
    lens = np.array([6, 2, 40])
    ids, last, eot = assemble(
        jnp.asarray(caps), jnp.asarray(lens), table, 77, tok.sot_id, tok.eot_id
    )
    texts = [" ".join(WORDS[i] for i in c[:n]) for c, n in zip(caps, lens)]
    np.testing.assert_array_equal(np.asarray(ids), tokenize(texts))
    assert int(eot[2]) == 76 and int(last[2, -1]) == 75  # cut-off words read the last kept piece


def test_word_and_sentence_features_equal_clip_at_the_words_last_pieces():
    enc, v = _encoder()
    tok = default_tokenizer()
    caps = jnp.array([[1, 2, 3, 4, 1, 5, 0, 0], [7, 6, 8, 1, 2, 3, 0, 0]], jnp.int32)
    lens = jnp.array([6, 6])
    words, sent = enc.apply(v, caps, lens)
    assert words.shape == (2, 8, 16) and sent.shape == (2, 16)

    clip = clip_lib.build(SPEC)
    cv = {"params": v["params"]["clip"]}
    p = v["params"]
    for b in range(2):
        ws = [WORDS[int(i)] for i in caps[b, : int(lens[b])]]
        ids = jnp.asarray(tokenize([" ".join(ws)]))
        x = clip.apply(cv, ids, method=clip.text_tokens)[0]  # (77, W)
        ends = 1 + np.cumsum([len(tok.encode(w)) for w in ws]) - 1  # each word's last piece
        want = x[ends] @ p["word_head"]["kernel"] + p["word_head"]["bias"]
        np.testing.assert_allclose(words[b, : len(ws)], want, rtol=1e-5, atol=1e-5)
        assert np.all(np.asarray(words[b, len(ws) :]) == 0)  # padding positions exactly 0
        e = clip.apply(cv, ids, method=clip.encode_text)[0]
        want_s = e @ p["sent_head"]["kernel"] + p["sent_head"]["bias"]
        np.testing.assert_allclose(sent[b], want_s, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("train_tower", [False, True])
def test_frozen_tower_gets_no_gradient_and_the_table_never_does(train_tower):
    enc, v = _encoder(train_tower)
    caps = jnp.array([[1, 2, 3, 0], [6, 7, 0, 0]], jnp.int32)
    lens = jnp.array([3, 2])

    def loss(params):
        w, s = enc.apply({"params": params}, caps, lens)
        return jnp.sum(w**2) + jnp.sum(s**2)

    g = jax.grad(loss)(v["params"])
    tower = max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(g["clip"]))
    assert (tower > 0) == train_tower
    assert float(jnp.max(jnp.abs(g["vocab_pieces"]))) == 0
    assert float(jnp.max(jnp.abs(g["word_head"]["kernel"]))) > 0
    assert float(jnp.max(jnp.abs(g["sent_head"]["kernel"]))) > 0


def test_spec_round_trips_model_json_and_builds_the_clip_encoder():
    from attngan_jax.config_lib import base_config

    c = base_config()
    c.model.text_encoder = "clip"
    c.model.clip_preset = "tiny"
    spec = factory.ModelSpec.from_config(c, vocab_size=50)
    assert spec.clip == SPEC
    back = factory.ModelSpec.from_json(spec.to_json())
    assert back == spec and isinstance(factory.text_encoder(back), CLIPTextEncoder)
    # model.json files written before the CLIP encoder existed still load, as the RNN
    old = {k: v for k, v in spec.to_json().items() if not k.startswith(("clip", "text_encoder"))}
    assert factory.ModelSpec.from_json(old).text_encoder == "rnn"
