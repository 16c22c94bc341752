"""The evaluator interface: one plug-in per metric, fed the same generated batches.

An evaluator is a class with a ``name`` (the ``--metrics`` entry), built from a :class:`Context`
(raising :class:`Skip` with the reason when the metric cannot be computed for this model or these
inputs), then ``update(batch)`` for every :class:`GeneratedBatch` and ``result()`` once: a dict of
figures for the metrics JSON. ``info`` holds what the JSON records beside the figures (the network
convention, the reference file). The loop is :func:`attngan_jax.eval.evaluators.evaluate`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Protocol

import numpy as np

from attngan_jax.eval.sampling import LoadedModel
from attngan_jax.metrics.networks import EvalInception, load_eval_inception
from attngan_jax.models.factory import ModelSpec
from attngan_jax.visualize import to_uint8


class Skip(Exception):
    """The metric cannot be computed here; the message says why (the JSON's ``skipped``)."""


@dataclasses.dataclass
class Context:
    """What every evaluator may read: the model, the data and the options of the run."""

    model: LoadedModel
    model_dir: str
    data_path: str
    dataset: str
    num_images: int
    batch_size: int
    seed: int
    inception: str | None
    inception_kind: str
    fid_inception: str | None
    fid_reference: str
    _networks: dict = dataclasses.field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        """The model's networks."""
        return self.model.spec

    @property
    def image_size(self) -> int:
        """The final stage's image size."""
        return int(self.spec.image_sizes[-1])

    def network(self, path: str, kind: str) -> EvalInception:
        """An Inception network, loaded once per file and shared by the evaluators that use it."""
        if path not in self._networks:
            self._networks[path] = load_eval_inception(path, kind)
        return self._networks[path]


@dataclasses.dataclass
class GeneratedBatch:
    """One batch of generated images with the captions and records they came from.

    Attributes:
        final: (n, S, S, 3) float32 final-stage images in [-1, 1].
        ids: (n, T) int32 caption word ids; lens: (n,) their lengths.
        record: the loader's batch (``index``, ``class_ids``, ...; rows beyond ``n`` unused).
        n: number of images.
        stages: every stage's images (n, S_i, S_i, 3), the last one being ``final``.
        attention: per attending stage (stages 1, 2, ...) the word attention (n, T, s_i, s_i).
    """

    final: np.ndarray
    ids: np.ndarray
    lens: np.ndarray
    record: dict
    n: int
    stages: tuple[np.ndarray, ...] = ()
    attention: tuple[np.ndarray, ...] = ()
    _inception: dict = dataclasses.field(default_factory=dict, repr=False)

    @functools.cached_property
    def uint8(self) -> np.ndarray:
        """(n, S, S, 3) uint8: every Inception network sees the quantised images."""
        return to_uint8(self.final)

    def inception(self, net: EvalInception) -> tuple[np.ndarray, np.ndarray | None]:
        """``net(uint8)`` = (pool features, logits), computed once per batch and network."""
        if id(net) not in self._inception:
            self._inception[id(net)] = net(self.uint8)
        return self._inception[id(net)]


class Evaluator(Protocol):
    """One metric (see the module docstring)."""

    name: str
    info: dict[str, Any]

    def update(self, batch: GeneratedBatch) -> None:
        """Consumes one batch."""

    def result(self) -> dict[str, Any]:
        """The figures (may raise :class:`Skip`)."""
