"""Model directories: the trained (or converted) networks that sampling and evaluation load.

Training checkpoints (``DIR/checkpoints``) hold the whole training state; at the end of a phase, and
when converting the original release, the networks alone are written as a *model directory*::

    DIR/model.json            model configuration (widths, vocabulary size, stages, ...)
    DIR/vocab.json            the vocabulary (attngan_jax.data.vocab.Vocabulary)
    DIR/model/damsm/          {"text": {"params"}, "image": {"params", "batch_stats"}}
    DIR/model/generator/      {"params" (the EMA weights), "batch_stats"}
    DIR/model/generator_raw/  {"params" (the raw, non-EMA weights), "batch_stats"} (training only)

Each part is an orbax checkpoint, written to a temporary name and renamed when complete, so an
interrupted export never looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from attngan_jax.errors import InputError, MissingInputError

PyTree = Any
MODEL_JSON = "model.json"


def _save_tree(path: str, tree: PyTree) -> None:
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=parent)
    shutil.rmtree(tmp)
    tree = jax.tree_util.tree_map(np.asarray, jax.device_get(tree))
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(tmp, tree)
    ckptr.wait_until_finished()
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def _load_tree(path: str) -> PyTree:
    if not os.path.isdir(path):
        raise MissingInputError(
            f"{path}: no exported networks here. Train first (python train.py ...) or convert the "
            "original release (python -m attngan_jax.convert.release ...)."
        )
    try:
        return ocp.StandardCheckpointer().restore(os.path.abspath(path))
    except (OSError, ValueError, KeyError) as e:  # a damaged or partly copied model directory
        raise InputError(f"{path}: cannot be read ({type(e).__name__}); export it again") from e


def save_model_config(directory: str, model_config: dict) -> None:
    """Writes ``model.json`` atomically."""
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{MODEL_JSON}.tmp")
    with open(tmp, "w") as f:
        json.dump(model_config, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(directory, MODEL_JSON))


def load_model_config(directory: str) -> dict:
    """Reads ``model.json``."""
    path = os.path.join(directory, MODEL_JSON)
    if not os.path.exists(path):
        raise MissingInputError(
            f"{path} not found: {directory} is not a model directory of attngan-jax (it is written "
            "at the end of training and by the converter of the original release)."
        )
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}); export the directory again") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: not a JSON object of model settings; export it again")
    return config


def save_damsm(directory: str, encoders: PyTree) -> None:
    """Saves ``{"text": {"params"}, "image": {"params", "batch_stats"}}``."""
    _save_tree(os.path.join(os.path.abspath(directory), "model", "damsm"), encoders)


def load_damsm(directory: str) -> PyTree:
    """Loads what :func:`save_damsm` wrote."""
    return _load_tree(os.path.join(os.path.abspath(directory), "model", "damsm"))


def save_generator(directory: str, variables: PyTree, raw: bool = False) -> None:
    """Saves the generator's ``{"params", "batch_stats"}`` (EMA weights, or ``raw`` ones)."""
    name = "generator_raw" if raw else "generator"
    _save_tree(os.path.join(os.path.abspath(directory), "model", name), variables)


def load_generator(directory: str, raw: bool = False) -> PyTree:
    """Loads what :func:`save_generator` wrote (``raw=True``: the non-EMA weights)."""
    name = "generator_raw" if raw else "generator"
    return _load_tree(os.path.join(os.path.abspath(directory), "model", name))


def has_damsm(directory: str) -> bool:
    """Whether a model directory holds DAMSM encoders."""
    return os.path.isdir(os.path.join(directory, "model", "damsm"))


def has_generator(directory: str) -> bool:
    """Whether a model directory holds a generator."""
    return os.path.isdir(os.path.join(directory, "model", "generator"))
