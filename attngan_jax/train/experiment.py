"""Training entry point: ``train_and_evaluate(config, workdir)`` (what ``train.py`` calls).

Phases (``config.phase``): ``damsm`` pretrains the DAMSM encoders, ``attngan`` trains the GAN with
frozen encoders loaded from ``config.gan.damsm_checkpoint`` (a model directory), ``demo`` runs both
(``WORKDIR/damsm`` then ``WORKDIR/attngan``) — the shapes demo that ``python train.py`` runs.

Every phase: data-parallel over every device of every process (``attngan_jax.runtime.sharding``), one
jitted step, orbax checkpoints of the whole state plus each process's data-loader position every
``checkpoint_every`` steps and on SIGTERM/SIGINT (restarting with the same workdir continues
exactly), TensorBoard scalars and images, a progress bar, non-finite losses stop the run naming the
step and the loss. At the end the networks are exported as a model directory
(``attngan_jax.model_dir``), the phase's figures are recorded in ``WORKDIR/phase.json`` (a finished
phase is not run again: a resumed run reports the same summary) and ``WORKDIR/summary.json`` is
written.

Several processes (``jax.distributed``; docs/multihost.md): every process runs
this same code. The primary process alone prepares the dataset (the others wait at a barrier, then
prepare their own copy only if they cannot see it), writes the exports, sample grids, summaries and
the final evaluation (which runs on its local devices); a SIGTERM/SIGINT on any process stops all of
them at the same step, agreed through the training step itself (:func:`loop.run_loop`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections as mlc
import numpy as np

from attngan_jax import config_lib, model_dir
from attngan_jax.data import negatives, pipeline, tfds_builders
from attngan_jax.data.vocab import Vocabulary
from attngan_jax.errors import InputError
from attngan_jax.models import factory
from attngan_jax.models.factory import ModelSpec
from attngan_jax.runtime import faults, sharding
from attngan_jax.train import damsm, evaluation, gan, loop

log = logging.getLogger(__name__)
PHASE_RECORD = "phase.json"


# ----------------------------------------------------------------------------- data
def prepare_data(config: mlc.ConfigDict) -> str:
    """Builds (or reuses) the prepared ArrayRecord dataset; returns its directory.

    Several processes: the primary prepares, the others wait; a process that then does not see
    the finished dataset (a data directory local to each host) prepares its own copy.
    """
    if sharding.is_primary():
        path = _prepare_data(config)
    sharding.barrier("prepare_data")
    if not sharding.is_primary():
        path = tfds_builders.dataset_dir(config.data.data_dir, config.data.name)
        if not tfds_builders.is_prepared(path):
            path = _prepare_data(config)
    return path


def _prepare_data(config: mlc.ConfigDict) -> str:
    d = config.data
    kwargs: dict[str, Any] = {}
    if d.name == "shapes":
        s = d.shapes
        kwargs = dict(
            num_train=s.num_train,
            num_test=s.num_test,
            image_size=s.image_size,
            seed=s.seed,
            captions_per_image=d.captions_per_image,
        )
    elif d.captions_per_image:
        kwargs = dict(captions_per_image=d.captions_per_image)
    manual = d.manual_dir or None
    return tfds_builders.prepare(d.name, d.data_dir, manual, progress=True, **kwargs)


def load_vocabulary(data_path: str) -> Vocabulary:
    """The vocabulary saved beside a prepared dataset."""
    return Vocabulary.load(pipeline.vocabulary_path(data_path))


def make_loader(config, data_path: str, split: str, batch_size: int, seed: int, train: bool):
    """The grain loader of a phase (``train=False``: no shuffling, one pass)."""
    d = config.data
    return pipeline.make_loader(
        data_path,
        split,
        global_batch_size=batch_size,
        image_sizes=config_lib.image_sizes(config),
        words_num=d.words_num,
        seed=seed,
        shuffle=train,
        num_epochs=None if train else 1,
        random_crop=d.random_crop if train else False,
        random_flip=d.random_flip if train else False,
        sort_by_length=d.sort_by_length,
        worker_count=d.worker_count if train else 0,
        read_threads=d.read_threads,
        cache_images=d.cache_images,
    )


# ----------------------------------------------------------------------------- phases
def intervals(config: mlc.ConfigDict) -> loop.Intervals:
    """The loop's logging and checkpoint intervals of an experiment."""
    return loop.Intervals(
        log=config.log_every,
        checkpoint=config.checkpoint_every,
        keep_checkpoints=config.keep_checkpoints,
    )


def _steps(config, phase_cfg, n_train: int) -> tuple[int, int]:
    spe = phase_cfg.steps_per_epoch or max(n_train // phase_cfg.batch_size, 1)
    total = phase_cfg.num_steps or phase_cfg.num_epochs * spe
    return total, spe


def finished_phase(workdir: str, total_steps: int) -> dict | None:
    """The figures a phase recorded when it finished ``total_steps`` and exported, else None."""
    path = os.path.join(workdir, PHASE_RECORD)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        record = json.load(f)
    return record if record.get("final_step") == total_steps else None


def record_phase(workdir: str, record: dict) -> None:
    """Writes ``workdir/phase.json`` (primary process, atomically): the phase is complete."""
    faults.point(f"record:{os.path.basename(workdir)}")
    if sharding.is_primary():
        _write_json(os.path.join(workdir, PHASE_RECORD), record)
    sharding.barrier("record_phase")


_write_json = evaluation.write_json


def _export(workdir: str, *writers: Callable[[], None]) -> None:
    """Runs the export writers on the primary process (the others wait)."""
    if sharding.is_primary():
        for path in model_dir.clean_leftovers(workdir):
            log.warning("removed %s, left by an interrupted export", path)
        for write in writers:
            write()
    sharding.barrier("export")


def run_damsm(config, spec: ModelSpec, workdir: str, data_path: str, mesh) -> dict:
    """DAMSM pretraining; exports the encoders to ``workdir``; returns summary figures."""
    d = config.damsm
    sharding.check_batch_size(d.batch_size, mesh, "damsm.batch_size")
    n_train = pipeline.num_records(data_path, "train")
    total, spe = _steps(config, d, n_train)
    if (record := finished_phase(workdir, total)) is not None and model_dir.has_damsm(workdir):
        log.info("damsm: finished earlier in %s (step %d)", workdir, total)
        return record
    size = max(spec.image_sizes)
    rng = jax.random.key(config.seed)
    tx = damsm.optimizer_for(spec, size)
    init_fn = lambda trunk=None, text=None: damsm.init_state(spec, rng, size, tx, trunk, text)  # noqa: E731
    vocab = load_vocabulary(data_path)

    def init_args():
        trunk = None  # a random trunk ("random") or the small trunk
        if config_lib.inception_weights_path(config) is not None:
            trunk = damsm.load_inception_trunk(config, spec, size)
        return trunk, damsm.clip_text_init(config, spec, vocab.ixtoword)  # (None for the RNN)

    tables = negatives.swap_tables(vocab.ixtoword) if config.damsm.mirror_negatives else None
    shape_tables = None
    if config.damsm.reshape_negatives:
        shape_tables = negatives.shape_word_table(vocab.ixtoword)
    step_fn = damsm.make_train_step(config, spec, tx, spe, tables, shape_tables)
    loader = make_loader(config, data_path, "train", d.batch_size, config.seed, True)

    def reset_opt(epoch, state):
        if not d.reset_optimizer_each_epoch:
            return state
        return state.replace(opt_state=jax.jit(tx.init)(state.params))

    program = loop.Program(
        init_fn=init_fn,
        step_fn=step_fn,
        init_args=init_args,
        on_epoch=reset_opt,
        steps_per_epoch=spe,
        parameters=lambda s: {"text encoder": s.params["text"], "image encoder": s.params["image"]},
    )
    export = functools.partial(export_damsm, spec=spec, vocab=vocab)
    compute = evaluation.damsm_evaluation(config, spec, vocab, data_path, mesh)
    evals = evaluation.periodic_evals(
        config, "damsm", workdir, compute, _best(config, workdir, export)
    )
    state, last = loop.run_loop(
        name="damsm",
        workdir=workdir,
        mesh=mesh,
        program=program,
        loader=loader,
        total_steps=total,
        every=intervals(config),
        actions=evals,
        batch_size=d.batch_size,
        trace_examples=config.trace_examples,
    )
    ev = evaluation.evaluate_damsm(config, spec, state, data_path, mesh, vocab)
    _export(workdir, lambda: export(workdir, state))
    record = {"final_step": total, "final_losses": last, **ev}
    record_phase(workdir, record)
    return record


def export_damsm(directory: str, state, spec: ModelSpec, vocab: Vocabulary) -> None:
    """The DAMSM phase's model directory: the encoders, ``model.json``, ``vocab.json``."""
    encoders = {
        "text": {"params": state.params["text"]},
        "image": {"params": state.params["image"], "batch_stats": state.batch_stats},
    }
    model_dir.save_damsm(directory, encoders)
    model_dir.save_spec(directory, spec)
    vocab.save(os.path.join(directory, "vocab.json"))


def export_gan(directory: str, state, spec: ModelSpec, vocab: Vocabulary) -> None:
    """The GAN phase's model directory: EMA and raw generators, encoders, spec, vocabulary."""
    stats = state.g_stats
    model_dir.save_generator(directory, {"params": state.ema_params, "batch_stats": stats})
    model_dir.save_generator(directory, {"params": state.g_params, "batch_stats": stats}, raw=True)
    model_dir.save_damsm(directory, state.encoders)
    model_dir.save_spec(directory, spec)
    vocab.save(os.path.join(directory, "vocab.json"))


def _best(config, workdir: str, export: Callable) -> evaluation.Best | None:
    return evaluation.Best(config.best, workdir, export) if config.best else None


def load_encoders(spec: ModelSpec, directory: str) -> Any:
    """DAMSM encoders of a model directory (numpy arrays), checked against ``spec``'s shapes."""
    enc = model_dir.load_damsm(directory)
    params, _ = jax.eval_shape(
        lambda: factory.init_encoders(spec, jax.random.key(0), max(spec.image_sizes))
    )
    got_t = jax.tree_util.tree_map(np.shape, enc["text"]["params"])
    want_t = jax.tree_util.tree_map(lambda x: x.shape, params["text"])
    if got_t != want_t:
        raise InputError(
            f"{directory}: the DAMSM text encoder does not fit this config (vocabulary size, "
            "emb_dim, or model.text_encoder / the CLIP size differ); train DAMSM on the same "
            "prepared dataset with the same --config.model.* or fix them"
        )
    return enc  # numpy: run_loop moves it to the devices leaf by leaf (sharding.put_leafwise)


def run_gan(config, spec: ModelSpec, workdir: str, data_path: str, mesh, damsm_dir: str) -> dict:
    """AttnGAN training; exports the EMA generator to ``workdir``; returns summary figures."""
    g = config.gan
    sharding.check_batch_size(g.batch_size, mesh, "gan.batch_size")
    if not damsm_dir:
        raise ValueError(
            "AttnGAN training needs pretrained DAMSM encoders: set --config.gan.damsm_checkpoint "
            "to the workdir of a DAMSM run or to a converted original release"
        )
    n_train = pipeline.num_records(data_path, "train")
    total, spe = _steps(config, g, n_train)
    if (record := finished_phase(workdir, total)) is not None and model_dir.has_generator(workdir):
        log.info("attngan: finished earlier in %s (step %d)", workdir, total)
        return record
    rng = jax.random.key(config.seed + 1)
    init_fn = lambda enc: gan.init_state(config, spec, rng, enc)  # noqa: E731
    vocab = load_vocabulary(data_path)
    step_fn = gan.make_train_step(config, spec, vocab.ixtoword)
    loader = make_loader(config, data_path, "train", g.batch_size, config.seed + 1, True)
    program = loop.Program(
        init_fn=init_fn,
        step_fn=step_fn,
        # read (and checked against this config) first for the abstract state, before any compile
        init_args=lambda: (load_encoders(spec, damsm_dir),),
        parameters=lambda s: {"generator": s.g_params, "discriminators": s.d_params},
    )
    grid = functools.partial(_sample_grid, config, spec, workdir, data_path, vocab, mesh)
    export = functools.partial(export_gan, spec=spec, vocab=vocab)
    compute = evaluation.generator_evaluation(config, spec, vocab, data_path, workdir)
    evals = evaluation.periodic_evals(
        config, "attngan", workdir, compute, _best(config, workdir, export)
    )
    state, last = loop.run_loop(
        name="attngan",
        workdir=workdir,
        mesh=mesh,
        program=program,
        loader=loader,
        total_steps=total,
        every=intervals(config),
        actions=[loop.Periodic("sample grid", config.sample_every, grid), *evals],
        batch_size=g.batch_size,
        trace_examples=config.trace_examples,
    )
    _export(workdir, lambda: export(workdir, state))
    record = {"final_step": total, "final_losses": last}
    record_phase(workdir, record)
    return record


def _sample_grid(config, spec, workdir, data_path, vocab, mesh, step, state, writer) -> None:
    """A super-image of test captions into TensorBoard and ``workdir/samples/step_<step>.png``.

    Every process samples (the generator is replicated over all of them); the primary writes.
    """
    from attngan_jax.eval.sampling import render_super_image

    img = render_super_image(spec, state, data_path, vocab, mesh, config.data.sort_by_length, num=8)
    writer.write_images(step, {"samples/super_image": img})
    if sharding.is_primary():
        from attngan_jax.visualize import save_png

        save_png(os.path.join(workdir, "samples", f"step_{step:07d}.png"), img)


# ----------------------------------------------------------------------------- entry point
def train_and_evaluate(config: mlc.ConfigDict, workdir: str) -> dict:
    """Runs the configured phase(s) in ``workdir`` and writes ``workdir/summary.json``.

    Args:
        config: an experiment config (``configs/*.py``).
        workdir: output directory; re-running with the same workdir resumes.

    Returns:
        The summary dict.
    """
    config_lib.validate(config)  # a bad value fails here, naming its --config flag
    if config.phase in ("damsm", "demo"):
        config_lib.inception_weights_path(config)  # a missing weights file fails before data prep
    if sharding.maybe_initialize_distributed() and jax.default_backend() == "cpu":
        # Seen with jaxlib 0.10.2: a process that read the step from the persistent cache and
        # one that compiled it ran mismatched gloo collectives and both hung at the first step.
        from attngan_jax.runtime import compilation_cache

        compilation_cache.disable()
        log.warning("several CPU processes: the persistent compilation cache is off")
    primary = sharding.is_primary()
    os.makedirs(workdir, exist_ok=True)
    mesh = sharding.make_mesh()
    data_path = prepare_data(config)
    spec = ModelSpec.from_config(config, vocab_size=len(load_vocabulary(data_path)))
    if primary:
        record = config_lib.finalize(config.copy_and_resolve_references())  # derived keys filled
        _write_json(os.path.join(workdir, "config.json"), json.loads(record.to_json_best_effort()))
    summary: dict[str, Any] = {
        "phase": config.phase,
        "devices": len(jax.devices()),
        "processes": jax.process_count(),
    }
    if config.phase in ("damsm", "demo"):
        damsm_dir = workdir if config.phase == "damsm" else os.path.join(workdir, "damsm")
        summary["damsm"] = run_damsm(config, spec, damsm_dir, data_path, mesh)
    if config.phase in ("attngan", "demo"):
        gan_dir = workdir if config.phase == "attngan" else os.path.join(workdir, "attngan")
        damsm_dir = config.gan.damsm_checkpoint or (
            os.path.join(workdir, "damsm") if config.phase == "demo" else ""
        )
        record = run_gan(config, spec, gan_dir, data_path, mesh, damsm_dir)
        summary["attngan"] = {k: v for k, v in record.items() if k != "evaluation"}
        if "evaluation" not in record:
            record["evaluation"] = _final_evaluation(config, gan_dir, data_path)
            record_phase(gan_dir, record)
        summary["evaluation"] = record["evaluation"]
    summary["final_step"] = max(
        (v.get("final_step", 0) for v in summary.values() if isinstance(v, dict)), default=0
    )
    if primary:
        _write_json(os.path.join(workdir, "summary.json"), summary)
    sharding.barrier("summary")
    return summary


def _final_evaluation(config, gan_dir: str, data_path: str) -> dict:
    """The end-of-run metrics, computed by the primary process alone on its local devices.

    Evaluation reads the exported model directory and runs without collectives; the other
    processes wait. Returns ``{}`` on the other processes (only the primary writes the summary).
    """
    result: dict = {}
    if sharding.is_primary():
        from attngan_jax.eval.evaluators import evaluate

        faults.point("evaluate")
        wanted = ["r_precision"]
        if config.eval.caption_fidelity:
            wanted += ["caption_fidelity", "attention_localisation"]
        result = evaluate(gan_dir, data_path, seed=config.seed, metrics=wanted)
    sharding.barrier("final_evaluation")
    return result
