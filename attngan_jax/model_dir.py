"""Model directories: the trained (or converted) networks that sampling and evaluation load.

Training checkpoints (``DIR/checkpoints``) hold the whole training state; at the end of a phase, and
when converting the original release, the networks alone are written as a *model directory*::

    DIR/model.json            the networks' ModelSpec (attngan_jax.models.factory): widths, vocabulary size, stages
    DIR/vocab.json            the vocabulary (attngan_jax.data.vocab.Vocabulary)
    DIR/model/damsm/          {"text": {"params"}, "image": {"params", "batch_stats"}}
    DIR/model/generator/      {"params" (the EMA weights), "batch_stats"}
    DIR/model/generator_raw/  {"params" (the raw, non-EMA weights), "batch_stats"} (training only)

Each part is an orbax checkpoint, written to a temporary name (``.tmp-<part>-*``) and renamed when
complete, so an interrupted export never looks complete; a part being replaced is first moved aside
(``.old-<part>-*``). The next export into the same directory deletes what a killed one left
(:func:`clean_leftovers`). Several processes: only the primary process writes (the callers check
``sharding.is_primary()``); every process may read, each with a checkpointer of its own process
(no cross-process barrier).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

from attngan_jax.errors import InputError, MissingInputError
from attngan_jax.models.factory import ModelSpec
from attngan_jax.runtime import atomic, faults, sharding

PyTree = Any
MODEL_JSON = "model.json"
_LEFTOVER_PATTERNS = (".tmp-*", ".old-*")


SHIPPED_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "shapes")
"""The shapes demo's model directory that ships with the package (``scripts/ship_shapes_model.py``)."""


def _checkpointer() -> ocp.StandardCheckpointer:
    """An orbax checkpointer that involves this process only (no barrier with the others)."""
    i = jax.process_index()
    return ocp.StandardCheckpointer(
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            primary_host=i, active_processes={i}, barrier_sync_key_prefix=f"export_p{i}"
        )
    )


def clean_leftovers(directory: str) -> list[str]:
    """Deletes the temporary and moved-aside parts a killed export left in ``directory/model``.

    Returns:
        The deleted paths.
    """
    found = []
    for pattern in _LEFTOVER_PATTERNS:
        found += glob.glob(os.path.join(os.path.abspath(directory), "model", pattern))
    for path in found:
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    return found


def _save_tree(path: str, tree: PyTree) -> None:
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tree = sharding.fetch(tree)  # numpy (replicated arrays: this process's copy)
    tmp = atomic.temp_name(path)  # .tmp-<part>-<hex>
    ckptr = _checkpointer()
    ckptr.save(tmp, tree)  # orbax itself writes tmp.orbax-checkpoint-tmp-* and renames it
    ckptr.wait_until_finished()
    ckptr.close()
    faults.point(f"export:{os.path.basename(os.path.dirname(parent))}:{name}")
    atomic.replace_dir(tmp, path)  # the previous part stays whole until the new one is in place


def _load_tree(path: str) -> PyTree:
    if not os.path.isdir(path):
        raise MissingInputError(
            f"{path}: no exported networks here. Train first (python train.py ...) or convert the "
            "original release (python -m attngan_jax.convert.release ...)."
        )
    ckptr = _checkpointer()
    try:
        return ckptr.restore(os.path.abspath(path))
    except (OSError, ValueError, KeyError) as e:  # a damaged or partly copied model directory
        raise InputError(f"{path}: cannot be read ({type(e).__name__}); export it again") from e
    finally:
        ckptr.close()


def save_model_config(directory: str, model_config: dict) -> None:
    """Writes ``model.json`` atomically (``runtime.atomic``)."""
    atomic.write_json(os.path.join(directory, MODEL_JSON), model_config, indent=2, sort_keys=True)


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


def save_spec(directory: str, spec: ModelSpec, **extra) -> None:
    """Writes ``model.json`` from a spec (``extra``: more keys, e.g. ``source``)."""
    save_model_config(directory, {**spec.to_json(), **extra})


def load_spec(directory: str) -> ModelSpec:
    """The :class:`~attngan_jax.models.factory.ModelSpec` of a model directory's ``model.json``.

    Raises:
        InputError: ``model.json`` is missing, not JSON, or lacks a key (named in the message).
    """
    return ModelSpec.from_json(
        load_model_config(directory), source=os.path.join(directory, MODEL_JSON)
    )


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


def resolve(path: str) -> str:
    """The model directory at ``path``: ``path`` itself, or the ``attngan/`` of a demo workdir.

    Raises:
        MissingInputError: neither holds a ``model.json`` (the message says what was looked for).
    """
    for cand in (path, os.path.join(path, "attngan")):
        if os.path.isfile(os.path.join(cand, MODEL_JSON)):
            return cand
    raise MissingInputError(
        f"{path}: not a model directory (no {MODEL_JSON} in it or in {path}/attngan). "
        "Model directories are written at the end of training (train.py) and by "
        "python -m attngan_jax.convert.release."
    )


def is_model_dir(path: str) -> bool:
    """Whether :func:`resolve` finds a model directory with a generator at ``path``."""
    try:
        return has_generator(resolve(path))
    except FileNotFoundError:
        return False
