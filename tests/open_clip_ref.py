"""open_clip as the reference of the CLIP tests, importable with a CPU-only torch.

``import open_clip`` imports torchvision (its image transforms), and the torchvision wheels on PyPI
are CUDA builds that do not load next to the CPU torch the project installs. The CLIP tests need
only ``open_clip.model`` (the ``CLIP`` module) and ``open_clip.tokenizer``, so when torchvision is
not installed they are imported without the package's ``__init__``, with a placeholder for the one
torchvision name they import (``torchvision.ops.misc.FrozenBatchNorm2d``, used only to freeze the
BatchNorms of ResNet towers); the placeholder is removed from ``sys.modules`` afterwards.

Without torch the tests skip (torch is optional everywhere, ``.ci/run`` tolerates its absence).
Without open_clip they skip with a message, except under ``CI=true`` where they fail, as
``paths.require_shared`` does: the project's CI installs open-clip-torch (``.ci/run``).
"""

import importlib
import importlib.util
import os
import sys
import types

import pytest

INSTALL = "pip install --no-deps open-clip-torch==3.3.0 safetensors, next to the CPU torch"


def _missing(what: str, fail_under_ci: bool = True):
    msg = f"{what} not importable: the CLIP parity tests need it ({INSTALL})"
    if fail_under_ci and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg)
    pytest.skip(msg)


def _import_without_init(pkg_dir: str) -> types.SimpleNamespace:
    pkg = types.ModuleType("open_clip")
    pkg.__path__ = [pkg_dir]
    sys.modules["open_clip"] = pkg
    stubbed = []
    if importlib.util.find_spec("torchvision") is None:
        names = ("torchvision", "torchvision.ops", "torchvision.ops.misc")
        for name in names:
            sys.modules[name] = types.ModuleType(name)

        class FrozenBatchNorm2d:  # only ResNet towers use it
            def __init__(self, *args, **kwargs):
                raise NotImplementedError("placeholder of the CLIP tests (no torchvision)")

        sys.modules["torchvision.ops.misc"].FrozenBatchNorm2d = FrozenBatchNorm2d
        stubbed = list(names)
    try:
        model = importlib.import_module("open_clip.model")
        tokenizer = importlib.import_module("open_clip.tokenizer")
    finally:
        for name in stubbed:
            sys.modules.pop(name, None)
    return types.SimpleNamespace(model=model, tokenizer=tokenizer)


_CACHE: list = []


def open_clip():
    """``namespace(model=open_clip.model, tokenizer=open_clip.tokenizer)``, or skip/fail."""
    if _CACHE:
        return _CACHE[0]
    if importlib.util.find_spec("torch") is None:
        _missing("torch", fail_under_ci=False)
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        _missing("open_clip")
    ns = _import_without_init(list(spec.submodule_search_locations)[0])
    _CACHE.append(ns)
    return ns


def random_clip(spec, seed: int = 0):
    """open_clip's CLIP of ``spec`` with random weights (biases and LayerNorms perturbed too)."""
    oc = open_clip()
    import torch

    torch.manual_seed(seed)
    m = oc.model
    model = m.CLIP(
        embed_dim=spec.embed_dim,
        vision_cfg=m.CLIPVisionCfg(
            layers=spec.vision_layers,
            width=spec.vision_width,
            head_width=spec.vision_width // spec.vision_heads,
            patch_size=spec.patch_size,
            image_size=spec.image_size,
        ),
        text_cfg=m.CLIPTextCfg(
            context_length=spec.context_length,
            vocab_size=spec.vocab_size,
            width=spec.text_width,
            heads=spec.text_heads,
            layers=spec.text_layers,
        ),
        quick_gelu=spec.quick_gelu,
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model
