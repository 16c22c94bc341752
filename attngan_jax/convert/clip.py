r"""open_clip / OpenAI CLIP weights -> a CLIP model directory (``clip.json`` + ``params.msgpack``).

    python -m attngan_jax.convert.clip --checkpoint=ViT-B-32.pt --out=runs/clip_b32 [--model=ViT-B-32]

Reads (never running code from the file):

* OpenAI's TorchScript archives (``ViT-B-32.pt``, ``ViT-B-16.pt``, ``ViT-L-14.pt``) with the
  restricted reader of :mod:`attngan_jax.convert.torchscript`; their weights use QuickGELU;
* open_clip ``state_dict`` files: ``.pt``/``.pth``/``.bin`` (torch's weights-only loader, needs the
  ``torch`` extra), ``.safetensors`` or ``.npz`` (numpy only); a ``module.`` prefix (DDP) is
  dropped. The activation cannot be read off the weights: open_clip's own trainings use GELU (the
  default here), ``--model=<name>-quickgelu`` or ``--quick_gelu`` says otherwise.

The architecture (:class:`~attngan_jax.models.clip.CLIPSpec`) is read off the shapes as open_clip's
``build_model_from_openai_state_dict`` does (heads = width / 64), or given by ``--model``, a preset
whose shapes the file must have. Key mapping (torch -> Flax ``params``; ``<blk>`` = ``resblocks.<i>`` ->
``resblocks_<i>``; Linear weights ``(out, in)`` are transposed to Dense kernels ``(in, out)``):

* ``visual.conv1.weight`` (W, 3, p, p) -> ``visual/conv1/kernel`` (p, p, 3, W);
  ``visual.{class_embedding,positional_embedding,proj}`` -> ``visual/<same>``;
  ``visual.ln_{pre,post}.{weight,bias}`` -> ``visual/ln_{pre,post}/{scale,bias}``;
* ``[visual.]transformer.<blk>.ln_{1,2}.{weight,bias}`` -> ``[visual/]transformer/<blk>/ln_{1,2}/..``;
  ``.attn.in_proj_{weight,bias}`` -> ``.../attn/in_proj/{kernel,bias}``;
  ``.attn.out_proj.*``, ``.mlp.c_fc.*``, ``.mlp.c_proj.*`` -> ``.../attn/out_proj``, ``.../mlp/c_fc``,
  ``.../mlp/c_proj``;
* ``token_embedding.weight`` -> ``token_embedding/embedding``; ``positional_embedding``,
  ``text_projection``, ``logit_scale`` (shape () or (1,)) -> same names;
  ``ln_final.*`` -> ``ln_final/{scale,bias}``;
* ignored: OpenAI's buffers ``input_resolution``, ``context_length``, ``vocab_size`` (checked
  against the spec) and any ``attn_mask`` (the causal mask is rebuilt).

Every missing, unexpected or mis-shaped key is named in one :class:`ConversionError`. Weights are
stored as float32 (OpenAI's float16 ones widened exactly).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import serialization

from attngan_jax.convert.common import ConversionError, check_against, put
from attngan_jax.convert.torch_io import load_state_dict
from attngan_jax.convert.torchscript import is_torchscript, load_torchscript_state_dict
from attngan_jax.errors import InputError, MissingInputError
from attngan_jax.models import clip as clip_model
from attngan_jax.models.clip import CLIPSpec
from attngan_jax.runtime import atomic

CLIP_JSON = "clip.json"
PARAMS = "params.msgpack"
HEAD_WIDTH = 64  # open_clip's CLIPVisionCfg.head_width; OpenAI's text towers too
_OPENAI_BUFFERS = ("input_resolution", "context_length", "vocab_size")


def read_checkpoint(path: str) -> tuple[dict[str, np.ndarray], bool]:
    """``(state_dict, is_openai_torchscript)`` of a checkpoint file (see the module docstring)."""
    if not os.path.isfile(path):
        raise MissingInputError(f"checkpoint file not found: {path}")
    if is_torchscript(path):
        return load_torchscript_state_dict(path), True
    sd = load_state_dict(path)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    return sd, False


def _layers(sd: Mapping[str, Any], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"resblocks\.(\d+)\.")
    found = {int(m.group(1)) for k in sd if (m := pat.match(k))}
    return max(found) + 1 if found else 0


def spec_from_state_dict(
    sd: Mapping[str, Any], quick_gelu: bool = False, source: str = "<state_dict>"
) -> CLIPSpec:
    """The :class:`CLIPSpec` that a CLIP state dict's shapes imply (heads = width / 64).

    Raises:
        ConversionError: a key the shapes are read from is missing (all of them named).
    """
    need = ("visual.conv1.weight", "visual.positional_embedding", "text_projection",
            "positional_embedding", "token_embedding.weight", "ln_final.weight")  # fmt: skip
    missing = [k for k in need if k not in sd]
    if missing:
        raise ConversionError(
            f"{source}: not a ViT CLIP state dict of open_clip/OpenAI: missing {missing} (the "
            "architecture is read off them). ResNet, timm or Hugging Face towers are not supported."
        )
    vw, _, patch, _ = np.shape(sd["visual.conv1.weight"])  # (W, 3, p, p)
    grid = round(math.sqrt(np.shape(sd["visual.positional_embedding"])[0] - 1))
    tw, embed = np.shape(sd["text_projection"])  # (W_text, E)
    return CLIPSpec(
        embed_dim=int(embed),
        image_size=int(patch * grid),
        patch_size=int(patch),
        vision_width=int(vw),
        vision_layers=_layers(sd, "visual.transformer."),
        vision_heads=int(vw) // HEAD_WIDTH,
        context_length=int(np.shape(sd["positional_embedding"])[0]),
        vocab_size=int(np.shape(sd["token_embedding.weight"])[0]),
        text_width=int(tw),
        text_layers=_layers(sd, "transformer."),
        text_heads=int(tw) // HEAD_WIDTH,
        quick_gelu=quick_gelu,
    )


def _block_keys(torch_prefix: str, path: tuple[str, ...], w: int) -> dict:
    """The torch keys -> (Flax path, torch shape, layout) of one residual attention block."""
    out = {}
    for ln in ("ln_1", "ln_2"):
        out[f"{torch_prefix}{ln}.weight"] = ((*path, ln, "scale"), (w,), "v")
        out[f"{torch_prefix}{ln}.bias"] = ((*path, ln, "bias"), (w,), "v")
    for torch_name, flax_name, o, i in (
        ("attn.in_proj", ("attn", "in_proj"), 3 * w, w),
        ("attn.out_proj", ("attn", "out_proj"), w, w),
        ("mlp.c_fc", ("mlp", "c_fc"), 4 * w, w),
        ("mlp.c_proj", ("mlp", "c_proj"), w, 4 * w),
    ):
        sep = "_" if torch_name == "attn.in_proj" else "."  # in_proj_weight vs out_proj.weight
        out[f"{torch_prefix}{torch_name}{sep}weight"] = ((*path, *flax_name, "kernel"), (o, i), "T")
        out[f"{torch_prefix}{torch_name}{sep}bias"] = ((*path, *flax_name, "bias"), (o,), "v")
    return out


def key_table(spec: CLIPSpec) -> dict[str, tuple[tuple[str, ...], tuple[int, ...], str]]:
    """Every torch key of ``spec``'s state dict -> (Flax params path, torch shape, layout).

    Layouts: ``"v"`` as is, ``"T"`` transposed (Linear), ``"conv"`` (O, I, kh, kw) -> (kh, kw, I, O).
    """
    vw, tw, e, p = spec.vision_width, spec.text_width, spec.embed_dim, spec.patch_size
    grid = spec.image_size // p
    t = {
        "visual.conv1.weight": (("visual", "conv1", "kernel"), (vw, 3, p, p), "conv"),
        "visual.class_embedding": (("visual", "class_embedding"), (vw,), "v"),
        "visual.positional_embedding": (("visual", "positional_embedding"), (grid**2 + 1, vw), "v"),
        "visual.proj": (("visual", "proj"), (vw, e), "v"),
        "token_embedding.weight": (("token_embedding", "embedding"), (spec.vocab_size, tw), "v"),
        "positional_embedding": (("positional_embedding",), (spec.context_length, tw), "v"),
        "text_projection": (("text_projection",), (tw, e), "v"),
        "logit_scale": (("logit_scale",), (), "v"),
    }
    for name, prefix, w in (("ln_pre", "visual.", vw), ("ln_post", "visual.", vw), ("ln_final", "", tw)):  # fmt: skip
        path = ("visual", name) if prefix else (name,)
        t[f"{prefix}{name}.weight"] = ((*path, "scale"), (w,), "v")
        t[f"{prefix}{name}.bias"] = ((*path, "bias"), (w,), "v")
    for i in range(spec.vision_layers):
        t.update(_block_keys(f"visual.transformer.resblocks.{i}.",
                             ("visual", "transformer", f"resblocks_{i}"), vw))  # fmt: skip
    for i in range(spec.text_layers):
        t.update(_block_keys(f"transformer.resblocks.{i}.", ("transformer", f"resblocks_{i}"), tw))
    return t


def _ignored(key: str) -> bool:
    return key in _OPENAI_BUFFERS or key.split(".")[-1] == "attn_mask"


def convert_state_dict(
    sd: Mapping[str, Any], spec: CLIPSpec, source: str = "<state_dict>"
) -> dict[str, Any]:
    """A CLIP state dict -> ``{"params": ...}`` (float32 numpy) for ``models.clip.build(spec)``.

    Raises:
        ConversionError: naming every missing, unexpected and mis-shaped key at once, or an OpenAI
            buffer (``input_resolution``, ...) that contradicts ``spec``.
    """
    table = key_table(spec)
    missing = sorted(k for k in table if k not in sd)
    unexpected = sorted(k for k in sd if k not in table and not _ignored(k))
    shapes = {k: tuple(np.shape(sd[k])) for k in table if k in sd}
    if shapes.get("logit_scale") == (1,):  # open_clip's nonscalar_logit_scale
        shapes["logit_scale"] = ()
    wrong = [f"{k}: {shapes[k]} in the file, {table[k][1]} expected" for k in sorted(shapes)
             if shapes[k] != table[k][1]]  # fmt: skip
    for key, want in zip(_OPENAI_BUFFERS, (spec.image_size, spec.context_length, spec.vocab_size),
                         strict=True):  # fmt: skip
        if key in sd and int(np.asarray(sd[key])) != want:
            wrong.append(f"{key}: {int(np.asarray(sd[key]))} in the file, {want} expected")
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing: {missing}"] if missing else []
        parts += [f"{len(unexpected)} unexpected: {unexpected}"] if unexpected else []
        parts += [f"{len(wrong)} mis-shaped: {wrong}"] if wrong else []
        raise ConversionError(
            f"{source} does not fit the CLIP spec {spec} -- " + "; ".join(parts) + ". Likely "
            "cause: another architecture (check --model) or not a ViT CLIP of open_clip/OpenAI."
        )
    params: dict = {}
    for key, (path, _, layout) in table.items():
        a = np.asarray(sd[key], np.float32)
        if layout == "T":
            a = a.T  # (out, in) -> (in, out)
        elif layout == "conv":
            a = a.transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
        if key == "logit_scale":
            a = a.reshape(())  # open_clip's nonscalar_logit_scale stores (1,)
        put(params, path, np.array(a, np.float32, order="C"))  # not ascontiguousarray: 0-d -> 1-d
    variables = {"params": params}
    check_against(variables, clip_model.init_shapes(spec), source)
    return variables


def save(directory: str, spec: CLIPSpec, variables: Mapping, **extra: Any) -> None:
    """Writes ``params.msgpack`` then ``clip.json`` (spec + ``extra``), each atomically.

    An existing ``clip.json`` is deleted first, so a directory with a ``clip.json`` always holds
    the parameters it describes, even after a conversion into it was killed half way.
    """
    os.makedirs(directory, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(directory, CLIP_JSON))
    atomic.write_bytes(os.path.join(directory, PARAMS), serialization.msgpack_serialize(variables))
    atomic.write_json(os.path.join(directory, CLIP_JSON), {**spec.to_json(), **extra}, indent=2)


def load(directory: str) -> tuple[CLIPSpec, dict]:
    """Reads a CLIP model directory: ``(spec, {"params": ...})`` for ``models.clip.build(spec)``.

    Raises:
        MissingInputError: no ``clip.json`` (not a converted CLIP directory).
        InputError: ``clip.json`` or ``params.msgpack`` unreadable or not matching each other.
    """
    path = os.path.join(directory, CLIP_JSON)
    if not os.path.isfile(path):
        raise MissingInputError(
            f"{path} not found: convert weights first (python -m attngan_jax.convert.clip ...)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        names = {field.name for field in dataclasses.fields(CLIPSpec)}
        spec = CLIPSpec.from_json({k: v for k, v in meta.items() if k in names})
        with open(os.path.join(directory, PARAMS), "rb") as f:
            variables = serialization.msgpack_restore(f.read())
    except (OSError, ValueError, TypeError) as e:
        raise InputError(f"{directory}: cannot be read ({type(e).__name__}: {e})") from None
    check_against(variables, clip_model.init_shapes(spec), os.path.join(directory, PARAMS))
    return spec, variables


def convert(
    checkpoint: str, out: str, model: str | None = None, quick_gelu: bool | None = None
) -> CLIPSpec:
    """Converts ``checkpoint`` into the model directory ``out`` (see the module docstring).

    Args:
        checkpoint: OpenAI TorchScript archive or open_clip state dict file.
        out: directory to write.
        model: a preset name (``ViT-B-32``, ``ViT-L-14-quickgelu``, ...) the shapes must match
            (default: the architecture is read off the shapes).
        quick_gelu: the activation; default: True for OpenAI archives, else the preset's (GELU).

    Returns:
        The spec written to ``clip.json``.
    """
    sd, openai = read_checkpoint(checkpoint)
    if quick_gelu is None:
        quick_gelu = openai or (model is not None and model.endswith("-quickgelu"))
    if model is None:
        spec = spec_from_state_dict(sd, quick_gelu, checkpoint)
    else:  # the preset's shapes: a file of another size fails naming its keys and both shapes
        try:
            spec = dataclasses.replace(clip_model.preset(model), quick_gelu=quick_gelu)
        except ValueError as e:
            raise InputError(f"--model: {e}") from None
    variables = convert_state_dict(sd, spec, checkpoint)
    save(out, spec, variables, source=os.path.abspath(checkpoint),
         format="openai-torchscript" if openai else "open_clip-state_dict")  # fmt: skip
    return spec


def main(argv: list[str]) -> None:
    """CLI entry point (absl flags, see the module docstring)."""
    from attngan_jax.runtime import xla_flags

    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend
    from absl import flags

    from attngan_jax import cli

    del argv
    f = flags.FLAGS
    with cli.report_input_errors():  # a wrong file: one line naming it, no traceback
        spec = convert(f.checkpoint, f.out, f.model, f.quick_gelu)
    print(f"wrote {f.out}: {spec}")


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("checkpoint", None, "OpenAI .pt archive or open_clip state dict.",
                        required=True)  # fmt: skip
    flags.DEFINE_string("out", None, "Model directory to write.", required=True)
    flags.DEFINE_string("model", None, "Preset the weights must match (e.g. ViT-B-32).")
    flags.DEFINE_bool("quick_gelu", None, "QuickGELU (default: OpenAI archives yes, else no).")


if __name__ == "__main__":
    from absl import app

    import attngan_jax  # noqa: F401  (XLA flags before JAX starts)

    _define_flags()
    app.run(main)
