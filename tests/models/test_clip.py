"""CLIP in Flax against open_clip: key table, parameter counts, embeddings, logits."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest
from open_clip_ref import open_clip, random_clip

from attngan_jax.convert.clip import convert_state_dict, key_table
from attngan_jax.models import clip
from attngan_jax.models.clip_tokenizer import tokenize

CAPTIONS = [
    "a photo of a cat",
    "A bird with a RED crown, a short beak... and white wings!",
    "",
    "emoji 🐦🔥 and CJK 鳥",
    "it's a bird's nest &amp; they're here",
    " ".join(["a very long caption about a small bird"] * 20),
    "word " * 75,
    "word " * 74,
]


def _state_dict(model) -> dict:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-B-16", "ViT-L-14"])
def test_key_table_and_parameter_count_match_open_clip(name):
    """Every preset's torch keys and shapes equal open_clip's (built on the meta device: free)."""
    oc = open_clip()
    import torch

    spec = clip.preset(name)
    cfg = json.load(open(os.path.join(os.path.dirname(oc.model.__file__), "model_configs",
                                      f"{name}.json")))  # fmt: skip
    with torch.device("meta"):
        model = oc.model.CLIP(**cfg)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: v[1] for k, v in key_table(spec).items()} == want
    shapes = clip.init_shapes(spec)["params"]
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
    assert n == sum(p.numel() for p in model.parameters())


def test_preset_names():
    assert clip.preset("ViT-B-32-quickgelu") == dataclasses.replace(
        clip.preset("ViT-B-32"), quick_gelu=True
    )
    with pytest.raises(ValueError, match="ViT-L-14-quickgelu"):
        clip.preset("RN50")


@pytest.mark.parametrize("quick_gelu", [False, True])
def test_embeddings_and_logits_match_open_clip(quick_gelu):
    import torch

    spec = dataclasses.replace(clip._TINY, quick_gelu=quick_gelu)
    ref = random_clip(spec, seed=int(quick_gelu))
    variables = convert_state_dict(_state_dict(ref), spec)
    images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    texts = tokenize(CAPTIONS)  # (8, 77): one truncated, one exactly 77 ids
    with torch.no_grad():
        t_img = torch.from_numpy(images.transpose(0, 3, 1, 2))  # NHWC -> NCHW
        t_txt = torch.from_numpy(texts.astype(np.int64))
        want_img = ref.encode_image(t_img).numpy()
        want_txt = ref.encode_text(t_txt).numpy()
        want_logits, _ = ref.get_logits(t_img, t_txt)
        x = ref.token_embedding(t_txt) + ref.positional_embedding
        want_tokens = ref.ln_final(ref.transformer(x, attn_mask=ref.attn_mask)).numpy()
    model = clip.build(spec)

    @jax.jit
    def outputs(variables, images, texts):  # one compile for the four
        return (
            model.apply(variables, images, method=clip.CLIP.encode_image),
            model.apply(variables, texts, method=clip.CLIP.encode_text),
            model.apply(variables, texts, method=clip.CLIP.text_tokens),
            *clip.logits(*model.apply(variables, images, texts)),
        )

    got_img, got_txt, got_tokens, per_image, per_text = outputs(variables, images, texts)
    assert got_img.shape == (4, spec.embed_dim) and got_txt.shape == (8, spec.embed_dim)
    assert got_tokens.shape == (8, 77, spec.text_width)
    for got, want in ((got_img, want_img), (got_txt, want_txt), (got_tokens, want_tokens),
                      (per_image, want_logits.numpy())):  # fmt: skip
        assert _rel(got, want) < 1e-4, _rel(got, want)
    np.testing.assert_array_equal(per_text, per_image.T)
    # the embeddings must depend on the input: a swapped batch changes the features
    assert _rel(got_img[::-1], want_img) > 1e-2


def test_text_tokens_are_causal():
    """Changing a later token leaves the features of earlier positions unchanged."""
    spec = dataclasses.replace(clip._TINY, vocab_size=1000)  # a small table: a faster init
    model = clip.build(spec)
    a = np.random.default_rng(0).integers(1, 999, (1, 77)).astype(np.int32)
    b = a.copy()
    b[0, 5] = 999

    @jax.jit
    def tokens(texts):  # the text tower only: its parameters, its features
        variables = model.init(jax.random.key(0), texts, method=clip.CLIP.text_tokens)
        return model.apply(variables, texts, method=clip.CLIP.text_tokens)

    fa, fb = tokens(a), tokens(b)
    np.testing.assert_allclose(fa[0, :5], fb[0, :5], rtol=1e-6, atol=1e-6)
    assert np.abs(fa[0, 5:] - fb[0, 5:]).max() > 1e-3
