"""The CLIP converter: open_clip state dicts and TorchScript archives -> model directory -> same embeddings."""

import dataclasses
import os
import zipfile

import jax
import numpy as np
import pytest
from open_clip_ref import random_clip

from attngan_jax.convert import clip as convert_clip
from attngan_jax.convert.common import ConversionError
from attngan_jax.convert.torchscript import load_torchscript_state_dict
from attngan_jax.models import clip
from attngan_jax.models.clip_tokenizer import tokenize

SPEC = clip._TINY
CAPTIONS = ["a small bird with a red head", "two dogs &amp; a ball", "", "x " * 100]


def _reference(quick_gelu=False, seed=0):
    return random_clip(dataclasses.replace(SPEC, quick_gelu=quick_gelu), seed)


def _embeddings_of(directory):
    spec, variables = convert_clip.load(directory)
    model = clip.build(spec)
    images = np.random.default_rng(1).normal(size=(3, 32, 32, 3)).astype(np.float32)
    texts = tokenize(CAPTIONS)
    img, txt, scale = jax.jit(model.apply)(variables, images, texts)
    return spec, images, texts, np.asarray(img), np.asarray(txt), float(scale)


def _torch_embeddings(model, images, texts):
    import torch

    with torch.no_grad():
        img, txt, scale = model(
            torch.from_numpy(images.transpose(0, 3, 1, 2)), torch.from_numpy(texts.astype(np.int64))
        )
    return img.numpy(), txt.numpy(), float(scale)


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_state_dict_file_round_trip(tmp_path, fmt):
    import torch

    ref = _reference()
    path = str(tmp_path / f"open_clip.{fmt}")
    if fmt == "pth":
        torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, path)  # DDP prefix
    else:
        numpy_st = pytest.importorskip("safetensors.numpy")
        numpy_st.save_file({k: v.numpy() for k, v in ref.state_dict().items()}, path)
    out = str(tmp_path / "clip")
    spec = convert_clip.convert(path, out)
    assert spec == SPEC and os.path.isfile(os.path.join(out, "clip.json"))
    spec, images, texts, img, txt, scale = _embeddings_of(out)
    want_img, want_txt, want_scale = _torch_embeddings(ref, images, texts)
    assert _rel(img, want_img) < 1e-4 and _rel(txt, want_txt) < 1e-4
    assert scale == pytest.approx(want_scale, rel=1e-6)


def _torchscript_archive(ref, path):
    """An archive like OpenAI's: traced, float16 weights, the three int buffers."""
    import torch

    for name, value in (("input_resolution", SPEC.image_size),
                        ("context_length", SPEC.context_length), ("vocab_size", SPEC.vocab_size)):  # fmt: skip
        if hasattr(ref, name):  # open_clip keeps the last two as plain ints
            delattr(ref, name)
        ref.register_buffer(name, torch.tensor(value))
    example = (torch.zeros(1, 3, 32, 32), torch.zeros(1, 77, dtype=torch.long))
    traced = torch.jit.trace(ref, example, check_trace=False)
    traced.half()
    torch.jit.save(traced, path)
    return traced


@pytest.mark.filterwarnings("ignore")  # the tracer's warnings about open_clip's Python branches
def test_openai_torchscript_archive(tmp_path):
    import torch

    ref = _reference(quick_gelu=True, seed=1)
    path = str(tmp_path / "ViT-tiny.pt")
    _torchscript_archive(ref, path)
    with pytest.raises(RuntimeError):  # what a weights-only torch.load says to such archives
        torch.load(path, weights_only=True)
    sd = load_torchscript_state_dict(path)
    want = torch.jit.load(path).state_dict()
    assert sorted(sd) == sorted(want)
    for k, v in want.items():
        assert sd[k].dtype == v.numpy().dtype, k
        np.testing.assert_array_equal(sd[k], v.numpy(), err_msg=k)
    assert sd["visual.conv1.weight"].dtype == np.float16
    out = str(tmp_path / "clip")
    spec = convert_clip.convert(path, out)
    assert spec.quick_gelu  # OpenAI archives: QuickGELU
    ref.half().float()  # the reference with the archive's float16-rounded weights
    spec, images, texts, img, txt, scale = _embeddings_of(out)
    want_img, want_txt, _ = _torch_embeddings(ref, images, texts)
    assert _rel(img, want_img) < 1e-4 and _rel(txt, want_txt) < 1e-4


def test_torchscript_reader_refuses_other_globals(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = str(tmp_path / "evil.pt")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(Evil()))
        z.writestr("evil/constants.pkl", pickle.dumps(()))
    with pytest.raises(ConversionError, match="system"):
        load_torchscript_state_dict(path)


def test_errors_name_every_bad_key():
    rng = np.random.default_rng(0)
    sd = {k: rng.normal(size=s).astype(np.float32)
          for k, (_, s, _) in convert_clip.key_table(SPEC).items()}  # fmt: skip
    del sd["visual.transformer.resblocks.1.mlp.c_fc.bias"]
    sd["transformer.resblocks.0.attn.out_proj.weight"] = np.zeros((128, 64), np.float32)
    sd["visual.extra_head.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ConversionError) as e:
        convert_clip.convert_state_dict(sd, SPEC, "bad.pth")
    msg = str(e.value)
    assert "visual.transformer.resblocks.1.mlp.c_fc.bias" in msg
    assert "transformer.resblocks.0.attn.out_proj.weight: (128, 64)" in msg
    assert "visual.extra_head.weight" in msg


def test_model_preset_must_match(tmp_path):
    sd = {k: np.zeros(s, np.float32) for k, (_, s, _) in convert_clip.key_table(SPEC).items()}
    path = str(tmp_path / "tiny.npz")
    np.savez(path, **sd)
    with pytest.raises(
        ConversionError, match=r"visual\.conv1\.weight: \(128, 3, 8, 8\) in the file"
    ):
        convert_clip.convert(path, str(tmp_path / "out"), model="ViT-B-32")
    assert not os.path.exists(tmp_path / "out" / "clip.json")
    spec = convert_clip.convert(path, str(tmp_path / "out"), quick_gelu=True)
    assert spec == dataclasses.replace(SPEC, quick_gelu=True)
