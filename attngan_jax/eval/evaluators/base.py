"""The evaluator interface: one plug-in per metric, fed the same generated batches.

An evaluator is a class with a ``name`` (the ``--metrics`` entry), built from a :class:`Context`
(raising :class:`Skip` with the reason when the metric cannot be computed for this model or these
inputs), then ``update(batch)`` for every :class:`GeneratedBatch` of this process's share,
``gather(allgather)`` once to combine every process's statistics (sums and counts; identity with
one process), and ``result()`` once: a dict of figures for the metrics JSON. ``info`` holds what the
JSON records beside the figures (the network convention, the reference file). The loop is
:func:`attngan_jax.eval.evaluators.run`.

The model is a :class:`~attngan_jax.eval.sampling.LoadedModel`: read from a model directory
(``eval.py``) or made from a training state (:func:`~attngan_jax.eval.sampling.local_model`).
:class:`PerStage` scores every stage's images with an evaluator that reads ``batch.final``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from attngan_jax.errors import InputError
from attngan_jax.eval import protocols
from attngan_jax.eval.sampling import LoadedModel
from attngan_jax.metrics.networks import EvalInception, Pipeline, load_eval_inception
from attngan_jax.models.factory import ModelSpec
from attngan_jax.visualize import to_uint8


class Skip(Exception):
    """The metric cannot be computed here; the message says why (the JSON's ``skipped``)."""


@dataclasses.dataclass
class Context:
    """What every evaluator may read: the model, the data and the options of the run.

    ``model_dir`` is the model directory, or the training phase's directory for an evaluation
    during training: FID caches its reference statistics under its ``eval/``. ``stages``:
    ``"final"`` or ``"all"`` (:class:`PerStage`). ``protocol``: the evaluation protocol preset
    (:mod:`attngan_jax.eval.protocols`) the evaluators follow and record.
    """

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
    protocol: protocols.Protocol = protocols.PRESETS["default"]
    damsm: str | None = None
    rp_list: str | None = None
    stages: str = "final"
    clip: str | None = None
    clip_score_variant: str = "galip"
    clip_pipeline: str = ""
    _networks: dict = dataclasses.field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        """The model's networks."""
        return self.model.spec

    @property
    def image_size(self) -> int:
        """The final stage's image size."""
        return int(self.spec.image_sizes[-1])

    def network(
        self,
        path: str,
        kind: str,
        pipeline: Pipeline | None = None,
        fc_bias: bool = True,
        required: str | None = None,
    ) -> EvalInception:
        """An Inception network, loaded once per (file, pipeline, bias) and shared by evaluators.

        Args:
            path: the weights.
            kind: ``auto`` or a kind of :mod:`attngan_jax.metrics.networks`.
            pipeline: how images reach it (None: the kind's default).
            fc_bias: logits with the ``fc`` bias.
            required: the kind the protocol needs; another kind is an :class:`InputError`.
        """
        key = (path, kind, pipeline, fc_bias)
        if key not in self._networks:
            self._networks[key] = load_eval_inception(path, kind, pipeline=pipeline,
                                                      fc_bias=fc_bias)  # fmt: skip
        net = self._networks[key]
        if required and net.kind != required:
            raise InputError(
                f"--protocol={self.protocol.name} needs {required!r} Inception weights "
                f"({protocols.WEIGHTS[required]}); {path} is {net.kind!r}"
            )
        return net


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
        items: (n,) the images' item numbers (their place in the evaluation, over all processes).
    """

    final: np.ndarray
    ids: np.ndarray
    lens: np.ndarray
    record: dict
    n: int
    stages: tuple[np.ndarray, ...] = ()
    attention: tuple[np.ndarray, ...] = ()
    items: np.ndarray | None = None
    _inception: dict = dataclasses.field(default_factory=dict, repr=False)
    _views: dict = dataclasses.field(default_factory=dict, repr=False)

    def at_stage(self, i: int) -> GeneratedBatch:
        """This batch with stage ``i``'s images as ``final`` (made once per stage)."""
        if i in (-1, len(self.stages) - 1) or not self.stages:
            return self
        if i not in self._views:
            self._views[i] = dataclasses.replace(
                self, final=self.stages[i], _inception={}, _views={}
            )
        return self._views[i]

    @functools.cached_property
    def uint8(self) -> np.ndarray:
        """(n, S, S, 3) uint8: every Inception network sees the quantised images."""
        return to_uint8(self.final)

    def inception(self, net: EvalInception) -> tuple[np.ndarray, np.ndarray | None]:
        """(pool features, logits) of ``final`` through ``net``'s pipeline, once per network.

        The pipeline quantises (``round``: :attr:`uint8`; ``truncate``; or not at all).
        """
        if id(net) not in self._inception:
            q = net.pipeline.quantise
            self._inception[id(net)] = net(self.uint8 if q == "round" else self.final)
        return self._inception[id(net)]


class Evaluator(Protocol):
    """One metric (see the module docstring)."""

    name: str
    info: dict[str, Any]

    def update(self, batch: GeneratedBatch) -> None:
        """Consumes one batch."""

    def gather(self, allgather: AllGather) -> None:
        """Replaces this process's statistics by those of every process combined."""

    def result(self) -> dict[str, Any]:
        """The figures (may raise :class:`Skip`)."""


AllGather = Callable[[Any], list]
"""``allgather(tree) -> [tree of process 0, tree of process 1, ...]`` (the same on every process)."""


class PerStage:
    """An evaluator of ``batch.final`` run on every stage's images (``Context.stages == "all"``).

    ``result()`` is the final stage's figures, as the wrapped evaluator gives them, plus
    ``<name>_per_stage``: ``{image size: figures}`` of every stage.
    """

    def __init__(self, cls: type, ctx: Context):
        self.name = cls.name
        self.sizes = [int(s) for s in ctx.spec.image_sizes]
        self.stages = [cls(ctx) for _ in self.sizes]
        self.info = self.stages[-1].info

    def update(self, batch: GeneratedBatch) -> None:
        """Feeds stage ``i``'s images to the ``i``-th evaluator."""
        for i, ev in enumerate(self.stages):
            ev.update(batch.at_stage(i))

    def gather(self, allgather: AllGather) -> None:
        """Combines every stage's statistics over the processes."""
        for ev in self.stages:
            ev.gather(allgather)

    def result(self) -> dict[str, Any]:
        """The final stage's figures and ``<name>_per_stage``."""
        per_stage = {str(s): ev.result() for s, ev in zip(self.sizes, self.stages)}
        return {**per_stage[str(self.sizes[-1])], f"{self.name}_per_stage": per_stage}
