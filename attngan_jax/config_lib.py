"""What every experiment config has, and the helpers and checks the files in ``configs/`` share.

Each experiment lives in its own file, ``attngan_jax/configs/<name>.py`` (re-exported as
``configs/<name>.py`` in a clone), as in big_vision: :func:`base_config` gives every key its default
(the original's ``code/miscc/config.py`` and birds values, reference §2), and the file sets the
values that make its experiment, with the reasons. Every key can be overridden on the command line::

    python train.py --config=configs/attngan_birds.py --config.gan.batch_size=20

Here: :func:`base_config`, :func:`eval_entry` (one evaluation during training), :func:`tiny` (the
``:tiny`` variants), the derived keys (:func:`image_sizes`, :func:`stage_sizes`) and
:func:`validate`.

Keys (every experiment has all of them; a phase ignores what it does not use):

* ``phase``: ``"damsm"`` (text/image encoder pretraining), ``"attngan"`` (GAN training with frozen
  encoders) or ``"demo"`` (DAMSM then AttnGAN in one run, the shapes demo).
* ``data``: dataset name, directories, pyramid sizes, words per caption, augmentation.
* ``model``: widths of every network (the original's GF_DIM, DF_DIM, EMBEDDING_DIM, ...).
* ``damsm`` / ``gan``: optimiser, schedule and loss weights of each phase.
* ``eval``: what the run evaluates at its end (retrieval accuracy, R-precision, caption fidelity).
* ``evals``: evaluations during training, ``evals.<name> = eval_entry(type, every_steps, ...)``:
  run every ``every_steps`` steps and at the last step of the phase their type belongs to
  (:data:`EVAL_TYPES`); figures in ``WORKDIR/<phase>/eval/<step>.json`` and TensorBoard
  (``eval/...``). Empty here: each experiment file turns on its own.
* ``best``: ``"<metric>:max"`` or ``"<metric>:min"`` (a key of the evaluations' figures, e.g.
  ``caption_fidelity/colour_single``): the best model so far is exported to
  ``WORKDIR/<phase>/best/`` with ``best.json``. ``""``: off.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ml_collections as mlc

from attngan_jax.errors import InputError, MissingInputError
from attngan_jax.models.stages import image_sizes, stage_sizes

VARIANTS = ("full", "tiny")
PHASES = ("damsm", "attngan", "demo")
DATASETS = ("birds", "coco", "custom", "shapes")
DTYPES = ("float32", "bfloat16")
IMAGE_TRUNKS = ("inception", "small")
TEXT_ENCODERS = ("rnn", "clip")  # attngan_jax.models.factory.TEXT_ENCODERS
# Each evaluation type and the phase whose training runs it (attngan_jax.train.evaluation).
EVAL_TYPES = {
    "is": "attngan",
    "fid": "attngan",
    "r_precision": "attngan",
    "caption_fidelity": "attngan",
    "attention_localisation": "attngan",
    "clip_score": "attngan",  # needs a converted CLIP: evals.<name>.clip (docs/clip.md)
    "clip_r_precision": "attngan",
    "damsm_retrieval": "damsm",  # held-out DAMSM losses, retrieval and shape accuracy
}
EVAL_STAGES = ("final", "all")
CLIP_SCORE_VARIANTS = ("galip", "clipscore")  # eval.evaluators.clip_metrics.SCORE_VARIANTS
CLIP_PIPELINES = ("", "openai", "galip")  # models.clip_preprocess.PIPELINES, "" = default


def parse_variant(arg: str | None, allowed: Sequence[str] = VARIANTS) -> str:
    """``None``/``""`` -> ``"full"``; otherwise the variant name (e.g. ``"tiny"``).

    Raises:
        InputError: ``arg`` is not one of ``allowed`` (a misspelt ``--config=FILE:VARIANT``
            would otherwise run the full experiment).
    """
    variant = arg or "full"
    if variant not in allowed:
        raise InputError(
            f"unknown config variant {variant!r} (--config=FILE:{variant}); use one of "
            f"{', '.join(allowed)}"
        )
    return variant


def base_config() -> mlc.ConfigDict:
    """Defaults = the original birds configuration (``code/cfg/*.yml``, reference §2)."""
    c = mlc.ConfigDict()
    c.phase = "attngan"
    c.seed = 0
    c.dtype = "float32"  # "bfloat16": bf16 compute, float32 parameters and losses

    c.data = mlc.ConfigDict()
    c.data.name = "birds"  # birds | coco | custom | shapes
    c.data.data_dir = "data/birds"  # prepared (ArrayRecord) datasets are written here
    c.data.manual_dir = ""  # original-layout files (CUB/COCO/custom); "" = data_dir
    c.data.image_sizes = ()  # () = derived from the stages (image_sizes(config))
    c.data.words_num = 18
    c.data.captions_per_image = 10
    c.data.random_crop = True
    c.data.random_flip = True
    c.data.sort_by_length = True  # the original sorts each batch by caption length
    c.data.worker_count = 0
    c.data.read_threads = 16  # records read ahead in threads (pipeline.make_loader)
    # Keep each record's decoded pyramid in memory (pipeline.make_loader's cache_images): only
    # without random crops and flips, and only where the images fit in RAM.
    c.data.cache_images = False
    c.data.shapes = mlc.ConfigDict(
        {"num_train": 4000, "num_test": 500, "image_size": 64, "seed": 0}
    )

    c.model = mlc.ConfigDict()
    c.model.embed_dim = 300  # the text encoder's input word embedding (ModelSpec.word_embed_dim)
    c.model.emb_dim = 256  # EMBEDDING_DIM, nef: the common text-image space (ModelSpec.emb_dim)
    c.model.image_trunk = "inception"  # inception | small
    c.model.small_trunk_width = 32
    c.model.small_trunk_spatial = False  # global code = flattened map (position-aware), not mean
    c.model.align_corners = True  # PyTorch 0.3 bilinear resize of the released models
    c.model.gf_dim = 32
    c.model.df_dim = 64
    c.model.z_dim = 100
    c.model.condition_dim = 100
    c.model.r_num = 2
    c.model.num_stages = 3
    c.model.base_size = 64  # first-stage resolution (64 in the original)
    c.model.dcgan = False
    c.model.faithful_mask = True  # the original's misaligned attention mask (reference §16.1)
    # The text encoder: "rnn" (the original bi-LSTM) or "clip" (CLIP's text tower, docs/clip.md).
    c.model.text_encoder = "rnn"
    c.model.clip = ""  # text_encoder=clip: a directory of python -m attngan_jax.convert.clip
    c.model.clip_preset = ""  # ... or a CLIP size with random weights: tiny, ViT-B-32, ...
    c.model.clip_text_trainable = False  # False: CLIP frozen, only its two linear heads learn
    c.model.clip_word_pieces = 8  # BPE pieces kept per vocabulary word (longer words: the last 8)

    c.damsm = mlc.ConfigDict()
    c.damsm.batch_size = 48
    c.damsm.num_epochs = 600
    c.damsm.steps_per_epoch = 0  # 0 = dataset size // batch size
    c.damsm.num_steps = 0  # > 0 overrides num_epochs
    c.damsm.lr = 0.002
    c.damsm.lr_decay = 0.98  # per epoch, until lr <= lr / 10 (reference §10)
    c.damsm.reset_optimizer_each_epoch = True  # the original re-creates Adam every epoch
    c.damsm.rnn_grad_clip = 0.25
    c.damsm.gamma1 = 4.0
    c.damsm.gamma2 = 5.0
    c.damsm.gamma3 = 10.0
    c.damsm.inception_bn_train = True  # the original runs the frozen Inception's BN in train mode
    # torchvision's ImageNet inception_v3_google-*.pth (or an .npz of its keys) for the frozen
    # trunk, as the original; "random" = a random frozen trunk (smoke tests). Small trunk: unused.
    c.damsm.inception_weights = ""
    c.damsm.dropout = 0.5
    c.damsm.class_masking = True  # same-class pairs are not negatives (reference §8.2)
    c.damsm.mirror_negatives = False  # mirrored image + swapped position words as negatives
    # Not in the original: each image's caption with one object's shape word renamed is an
    # extra negative of its row (data/negatives.reshape_captions).
    c.damsm.reshape_negatives = False

    c.gan = mlc.ConfigDict()
    c.gan.batch_size = 20
    c.gan.num_epochs = 600
    c.gan.steps_per_epoch = 0
    c.gan.num_steps = 0  # > 0 overrides num_epochs
    c.gan.g_lr = 2e-4
    c.gan.d_lr = 2e-4
    c.gan.beta1 = 0.5
    c.gan.beta2 = 0.999
    c.gan.lam = 5.0  # SMOOTH.LAMBDA
    c.gan.ema_decay = 0.999
    c.gan.damsm_checkpoint = ""  # workdir of a DAMSM run or a converted original encoder dir
    c.gan.gamma1 = 4.0
    c.gan.gamma2 = 5.0
    c.gan.gamma3 = 10.0
    c.gan.class_masking = True
    # Not in the original (off = the original): each caption with its position words swapped
    # is a hard mismatched text for the discriminators (_d) / a hard negative of the G's DAMSM
    # term (_g). See gan.make_train_step.
    c.gan.mirror_negatives_d = False
    c.gan.mirror_negatives_g = False
    # Not in the original: half of the hard captions of two-colour captions rename the second
    # colour instead (damsm.recolour_captions); needs mirror_negatives_d or _g.
    c.gan.recolour_negatives = False
    # Not in the original: a second hard caption per image, its caption with one object's shape
    # renamed (negatives.reshape_captions); needs mirror_negatives_d or _g.
    c.gan.reshape_negatives = False
    # Not in the original: the discriminators see real images with every object drawn twice
    # (negatives.duplicate_objects) as mismatches of their captions.
    c.gan.duplicate_negatives = False
    # Not in the original: the mode-seeking term of MSGAN (Mao et al., CVPR 2019, eq. 3) with this
    # weight (0: off). Each step also generates every caption with a second noise z2 and the
    # generator minimises 1 / (mean|G(c, z) - G(c, z2)| / mean|z - z2|), summed over stages, so it
    # cannot ignore z (the shapes demo drew a "hedge" of two blobs where a caption leaves the
    # position open). The generator's forward runs on 2B rows (BatchNorm statistics over both).
    c.gan.mode_seeking = 0.0

    c.log_every = 100
    c.checkpoint_every = 2000
    c.keep_checkpoints = 3
    c.sample_every = 1000
    # Debugging/tests: every process appends the record indices of its block of each step to
    # WORKDIR/<phase>/examples/process_<i>-of-<n>.jsonl (loop.run_loop).
    c.trace_examples = False

    c.eval = mlc.ConfigDict()
    c.eval.num_batches = 10
    c.eval.caption_fidelity = False
    # The preset of attngan_jax/eval/protocols.py that metrics of this run follow ("default": the
    # network kind decides, as eval.py without --protocol).
    c.eval.protocol = "default"
    c.evals = mlc.ConfigDict()  # evaluations during training: none unless an experiment adds them
    c.best = ""  # "<metric>:max|min" exports the best model so far to WORKDIR/<phase>/best/
    return c


def eval_entry(
    type: str,  # noqa: A002  (big_vision's key name)
    every_steps: int,
    num_images: int = 0,
    batch_size: int = 16,
    stages: str = "final",
    protocol: str = "",
    num_batches: int = 0,
) -> mlc.ConfigDict:
    """One ``config.evals.<name>``: every key present, so ``--config.evals.<name>.<key>=`` works.

    Args:
        type: one of :data:`EVAL_TYPES`.
        every_steps: interval in steps; it also runs at the phase's last step (0: only there).
        num_images: images generated from the test captions (generator evaluations).
        batch_size: generator batch, over all processes (a multiple of the process count).
        stages: ``"final"`` or ``"all"`` (each stage's images scored; caption fidelity and
            attention localisation always score every stage).
        protocol: the name of an evaluation protocol preset, recorded with the figures
            ("" = the defaults of ``attngan_jax.eval.evaluators``).
        num_batches: test batches of ``damsm.batch_size`` (``damsm_retrieval``).

    The entry's other keys are set with ``--config.evals.<name>.<key>=``: the IS / FID networks
    (``inception``, ``inception_kind``, ``fid_inception``, ``fid_reference``) and, for
    ``clip_score`` / ``clip_r_precision``, ``clip`` (a directory of
    ``python -m attngan_jax.convert.clip``; "" = skipped), ``clip_score_variant`` (``galip`` |
    ``clipscore``) and ``clip_pipeline`` (``openai`` | ``galip``; "" = the metric's default).
    """
    return mlc.ConfigDict(
        dict(
            type=type, every_steps=every_steps, num_images=num_images, batch_size=batch_size,
            stages=stages, protocol=protocol, num_batches=num_batches,
            # IS / FID networks (see docs/evaluation.md); "" = none (the metric is skipped)
            inception="", inception_kind="auto", fid_inception="", fid_reference="test",
            # CLIP model directory of clip_score / clip_r_precision; "" = none (skipped)
            clip="", clip_score_variant="galip", clip_pipeline="",
        )
    )  # fmt: skip


def finalize(config: mlc.ConfigDict) -> mlc.ConfigDict:
    """Fills the derived keys (``data.image_sizes``) in place, for the record of a run.

    Call after the command-line overrides and :func:`validate`; the saved ``config.json`` then
    shows the sizes the run used. Returns ``config``.
    """
    config.data.image_sizes = image_sizes(config)
    return config


def tiny(c: mlc.ConfigDict) -> None:
    """Shrinks any experiment, in place, to a few-second CPU run (the ``:tiny`` variants, tests)."""
    c.data.shapes.num_train = 64
    c.data.shapes.num_test = 16
    c.data.shapes.image_size = max(64, *image_sizes(c))
    c.model.image_trunk = "small"
    c.model.small_trunk_width = 8
    c.model.embed_dim = 16
    c.model.emb_dim = 16
    c.model.gf_dim = 4
    c.model.df_dim = 4
    c.model.z_dim = 8
    c.model.condition_dim = 8
    c.model.r_num = 1
    c.damsm.batch_size = 8
    c.gan.batch_size = 4
    c.damsm.num_steps = 2
    c.gan.num_steps = 2
    c.log_every = 1
    c.checkpoint_every = 1
    c.sample_every = 2
    c.eval.num_batches = 1
    for e in c.evals.values():
        e.num_images, e.batch_size, e.num_batches = 12, 4, 1  # R-precision: >= 10 (folds)


# ----------------------------------------------------------------------------- validation
def _bad(key: str, value, fix: str) -> InputError:
    return InputError(f"--config.{key}={value!r}: {fix}")


def _get(config: mlc.ConfigDict, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


def _check_int(config, key: str, minimum: int) -> None:
    v = _get(config, key)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise _bad(key, v, f"must be an integer >= {minimum}")


def _check_number(config, key: str, low: float, high: float, closed: str = "()") -> None:
    """``low < v < high``; ``closed`` ``"[)"``, ``"(]"`` or ``"[]"`` includes an end."""
    v = _get(config, key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    ok = ok and (low <= v if closed[0] == "[" else low < v)
    ok = ok and (v <= high if closed[1] == "]" else v < high)
    if not ok:
        raise _bad(key, v, f"must be a number in {closed[0]}{low:g}, {high:g}{closed[1]}")


def _check_choice(config, key: str, choices: Sequence[str]) -> None:
    v = _get(config, key)
    if v not in choices:
        raise _bad(key, v, f"must be one of {', '.join(choices)}")


def _check_text_encoder(config) -> None:
    m = config.model
    _check_choice(config, "model.text_encoder", TEXT_ENCODERS)
    if m.text_encoder == "rnn":
        for key in ("clip", "clip_preset"):
            if m[key]:
                raise _bad(f"model.{key}", m[key], "is read only with "
                           "--config.model.text_encoder=clip; set that too, or unset this")  # fmt: skip
        if m.clip_text_trainable:
            raise _bad("model.clip_text_trainable", True, "is read only with "
                       "--config.model.text_encoder=clip; set that too, or unset this")  # fmt: skip
        return
    _check_int(config, "model.clip_word_pieces", 1)
    from attngan_jax.models import factory  # here: importing this module stays free of JAX

    factory.clip_spec_of(m.clip, m.clip_preset)  # InputError naming the flag and the fix


def validate(config: mlc.ConfigDict) -> None:
    """Checks the values a user sets (``--config.x.y=...``) before any data or model is built.

    Raises:
        InputError: the first bad value; the message names its flag and the fix.
    """
    _check_choice(config, "phase", PHASES)
    _check_choice(config, "dtype", DTYPES)
    _check_choice(config, "data.name", DATASETS)
    _check_choice(config, "model.image_trunk", IMAGE_TRUNKS)
    _check_text_encoder(config)
    for key in ("data.words_num", "damsm.batch_size", "gan.batch_size", "model.embed_dim",
                "model.emb_dim", "model.gf_dim", "model.df_dim", "model.z_dim",
                "model.condition_dim", "model.num_stages", "model.small_trunk_width",
                "log_every", "checkpoint_every", "sample_every", "keep_checkpoints"):  # fmt: skip
        _check_int(config, key, 1)
    for key in ("data.captions_per_image", "data.worker_count", "data.read_threads",
                "model.r_num", "damsm.num_epochs", "damsm.num_steps", "damsm.steps_per_epoch",
                "gan.num_epochs", "gan.num_steps", "gan.steps_per_epoch",
                "eval.num_batches"):  # fmt: skip
        _check_int(config, key, 0)
    for key in ("damsm.lr", "gan.g_lr", "gan.d_lr"):
        _check_number(config, key, 0.0, float("inf"))
    _check_number(config, "damsm.lr_decay", 0.0, 1.0, "(]")
    _check_number(config, "gan.ema_decay", 0.0, 1.0, "[]")
    _check_number(config, "gan.mode_seeking", 0.0, float("inf"), "[)")
    for key in ("gan.beta1", "gan.beta2"):
        _check_number(config, key, 0.0, 1.0, "[)")
    for phase in ("damsm", "gan"):
        if not (config[phase].num_steps or config[phase].num_epochs):
            raise _bad(f"{phase}.num_steps", 0, f"set it or --config.{phase}.num_epochs above 0")

    sizes = config.data.image_sizes
    if (
        isinstance(sizes, (str, bytes))
        or not isinstance(sizes, Sequence)
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
    ):
        raise _bad("data.image_sizes", sizes, "must be a tuple of positive sizes, e.g. '(64,128)' "
                   "(or '()': derived from model.base_size and model.num_stages)")  # fmt: skip
    if list(sizes) != sorted(set(sizes)):
        raise _bad("data.image_sizes", sizes, "sizes must be increasing, e.g. '(64,128,256)'")
    if config.phase in ("attngan", "demo"):
        m = config.model
        base = m.base_size
        if not isinstance(base, int) or base < 8 or base & (base - 1):
            raise _bad("model.base_size", base, "must be a power of two >= 8 (64 in the original)")
        pyramid = stage_sizes(base, m.num_stages)
        if sizes and tuple(sizes) != pyramid:
            raise _bad(
                "data.image_sizes", sizes,
                f"the generator's {m.num_stages} stages from --config.model.base_size={base} "
                f"make {pyramid}; leave data.image_sizes unset (it is derived) or change "
                "model.base_size / model.num_stages",
            )  # fmt: skip
        if max(pyramid) > 256:
            raise _bad("model.base_size", base, f"the discriminators go up to 256 ({pyramid})")
    d = config.data
    if d.cache_images and (d.random_crop or d.random_flip):
        raise _bad(
            "data.cache_images", True,
            "keeps one decoded pyramid per record: set --config.data.random_crop=False and "
            "--config.data.random_flip=False, or leave it off",
        )  # fmt: skip
    gan = config.gan
    for key in ("recolour_negatives", "reshape_negatives"):
        if gan[key] and not (gan.mirror_negatives_d or gan.mirror_negatives_g):
            raise _bad(
                f"gan.{key}", True,
                "changes the hard captions of gan.mirror_negatives_d/_g: turn one of them on",
            )  # fmt: skip
    if config.phase == "attngan":
        d = gan.damsm_checkpoint
        if not d:
            raise _bad(
                "gan.damsm_checkpoint", d,
                "AttnGAN training needs pretrained DAMSM encoders: set it to the workdir of a "
                "DAMSM run (train.py --config=configs/damsm_*.py) or to a converted release",
            )  # fmt: skip
        if not os.path.isdir(os.path.join(d, "model", "damsm")):
            raise MissingInputError(
                f"--config.gan.damsm_checkpoint={d!r}: no DAMSM encoders in it ({d}/model/damsm "
                "is written at the end of a DAMSM run); give the workdir of a finished DAMSM run "
                "or a directory made by python -m attngan_jax.convert.release"
            )
    if config.phase in ("damsm", "demo"):
        inception_weights_path(config)  # unset or missing weights file
    _validate_evals(config)
    _validate_data_dirs(config.data)


def parse_best(best: str) -> tuple[str, str]:
    """``"metric:max"`` -> ``("metric", "max")``.

    Raises:
        InputError: not ``<metric>:max`` or ``<metric>:min``.
    """
    metric, _, mode = str(best).rpartition(":")
    if not metric or mode not in ("max", "min"):
        raise _bad("best", best, "must be '<metric>:max' or '<metric>:min', e.g. "
                   "'caption_fidelity/colour_single:max' (or '' for none)")  # fmt: skip
    return metric, mode


def _validate_evals(config: mlc.ConfigDict) -> None:
    for name, e in config.evals.items():
        key = f"evals.{name}"
        if not isinstance(e, mlc.ConfigDict) or "type" not in e:
            raise _bad(key, e, "must be an entry of config_lib.eval_entry(type, every_steps, ...)")
        _check_choice(config, f"{key}.type", tuple(EVAL_TYPES))
        _check_choice(config, f"{key}.stages", EVAL_STAGES)
        if "clip_score_variant" in e:  # entries of configs saved before CLIP have none
            _check_choice(config, f"{key}.clip_score_variant", CLIP_SCORE_VARIANTS)
            _check_choice(config, f"{key}.clip_pipeline", CLIP_PIPELINES)
            if e.clip and not os.path.isfile(os.path.join(e.clip, "clip.json")):
                raise MissingInputError(
                    f"--config.{key}.clip={e.clip}: no clip.json there (convert weights with "
                    "python -m attngan_jax.convert.clip, docs/clip.md)"
                )
        _check_int(config, f"{key}.every_steps", 0)
        _check_int(config, f"{key}.batch_size", 1)
        if EVAL_TYPES[e.type] == "damsm":
            _check_int(config, f"{key}.num_batches", 1)
        else:
            _check_int(config, f"{key}.num_images", 1)
    if config.best:
        parse_best(config.best)


def _validate_data_dirs(d: mlc.ConfigDict) -> None:
    """The original files a dataset that is not prepared yet is made from must be named."""
    if d.name == "shapes":
        return
    from attngan_jax.data import tfds_builders

    if tfds_builders.is_prepared(tfds_builders.dataset_dir(d.data_dir, d.name)):
        return  # prepared: the original files are not read again
    if not d.manual_dir:
        old = tfds_builders.older_versions(d.data_dir, d.name)
        raise _bad(
            "data.manual_dir", d.manual_dir,
            f"{d.name} is not prepared in --config.data.data_dir={d.data_dir!r} yet"
            + (f" (only in an older record format, {old[0]}: it is prepared again)" if old else "")
            + ": set --config.data.manual_dir to the folder with the "
            + ("original files (see docs/data.md)" if d.name != "custom" else "captioned images"),
        )  # fmt: skip
    if not os.path.isdir(d.manual_dir):
        raise MissingInputError(
            f"--config.data.manual_dir={d.manual_dir!r}: no such folder; give the folder with "
            + ("the original files (see docs/data.md)" if d.name != "custom" else "your images")
        )


def inception_weights_path(config) -> str | None:
    """The file the frozen Inception trunk starts from, or None (small or random trunk).

    Raises:
        InputError: the Inception trunk is configured but ``damsm.inception_weights`` is unset.
        MissingInputError: the configured file does not exist (a ``FileNotFoundError``).
    """
    path = config.damsm.inception_weights
    if config.model.image_trunk != "inception" or path == "random":
        return None
    if not path:
        raise InputError(
            "DAMSM pretraining with the Inception-v3 trunk needs its ImageNet weights (the "
            "original loads torchvision's inception_v3_google-1a9a5a14.pth and freezes it): set "
            "--config.damsm.inception_weights=PATH to torchvision's inception_v3_google-*.pth "
            "(reading .pth needs `pip install torch`; an .npz with the same keys needs nothing), "
            "or --config.damsm.inception_weights=random for a random frozen trunk (smoke tests only)"
        )
    if not os.path.exists(path):
        raise MissingInputError(
            f"--config.damsm.inception_weights={path}: no such file (torchvision's "
            "inception_v3_google-*.pth or an .npz with its keys)"
        )
    return path
