r"""Sample images from captions, serve the local page, or compute IS / FID / R-precision / fidelity.

    python eval.py --mode=serve                 # the local page with the shipped shapes model
    attngan-serve                               # installed: the same (attngan-eval is eval.py)
    python eval.py --mode=serve --workdir=runs/shapes --port=8080

    python eval.py --mode=sample --workdir=runs/shapes --captions=captions.txt --outdir=out
    python eval.py --mode=sample --workdir=runs/birds_release --caption="a small red bird" --num_samples=4
    python eval.py --mode=metrics --workdir=runs/shapes --data_dir=data/shapes
    python eval.py --mode=metrics --workdir=runs/birds_release --data_dir=data/birds \\
        --inception=pt_inception-2015-12-05-6726825d.pth --num_images=30000
    python eval.py --mode=metrics --workdir=runs --all      # every model directory below runs/
    python eval.py --mode=metrics --workdir=runs/birds_release --data_dir=data/birds \
        --protocol=dmgan_pytorch_fid --inception=inception_v3_google-1a9a5a14.pth \
        --fid_reference=bird_val.npz                     # DM-GAN's "Pytorch FID" column
    python eval.py --mode=metrics --workdir=runs/shapes --data_dir=data/shapes \
        --metrics=clip_score,clip_r_precision --clip=runs/clip_b32   # a converted CLIP (docs/clip.md)

See docs/evaluation.md for the conventions (which Inception weights give which published column).
"""

from attngan_jax import commands

if __name__ == "__main__":  # python -m attngan_jax.commands.eval (else commands.attngan_eval)
    commands.prepare_process("eval")  # XLA flags, malloc restart: before JAX is imported

import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402

from attngan_jax import cli, model_dir  # noqa: E402
from attngan_jax.eval import protocols  # noqa: E402
from attngan_jax.eval import run as eval_run  # noqa: E402
from attngan_jax.runtime import compilation_cache  # noqa: E402

_MODE = flags.DEFINE_enum("mode", None, ["sample", "metrics", "serve"], "What to do.")
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "A model directory, a demo workdir (its attngan/ subdir), or with --all a folder of them; "
    "sample/serve default: the shapes model that ships with the package.",
)
_PORT = flags.DEFINE_integer("port", 8080, "serve: port of the local page (0: a free one).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "serve: address to listen on.")
_CAPTIONS = flags.DEFINE_string("captions", None, "sample: caption file, one caption per line.")
_CAPTION = flags.DEFINE_multi_string(
    "caption", [], "sample: a caption (repeatable) instead of --captions."
)
_OUTDIR = flags.DEFINE_string("outdir", None, "sample: output folder (default WORKDIR/samples).")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "sample: images per caption.")
_SEED = flags.DEFINE_integer("seed", 0, "Noise seed (metrics: also the caption choice).")
_GENERATOR = flags.DEFINE_enum("generator", "ema", ["ema", "raw"], "EMA (exported) or raw weights.")
_TRUNCATION = flags.DEFINE_float("truncation", None, "sample: truncate z to [-t, t].")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Images per jitted call.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "metrics: prepared dataset (default data/<dataset>)."
)
_NUM_IMAGES = flags.DEFINE_integer("num_images", 0, "metrics: images (0: one per test record).")
_INCEPTION = flags.DEFINE_string(
    "inception", None, "metrics: IS/FID Inception weights (.pth/.npz/TF ckpt)."
)
_KIND = flags.DEFINE_enum(
    "inception_kind",
    "auto",
    ["auto", "torchvision", "fid", "stackgan"],
    "metrics: which network --inception is.",
)
_FID_INCEPTION = flags.DEFINE_string(
    "fid_inception", None, "metrics: separate FID network (default --inception)."
)
_FID_REF = flags.DEFINE_string(
    "fid_reference", "test", "metrics: reference .npz (mu, sigma) or a split name."
)
_METRICS = flags.DEFINE_list(
    "metrics",
    ["is", "fid", "r_precision", "caption_fidelity", "attention_localisation"],
    "metrics: which (--clip adds clip_score and clip_r_precision unless --metrics is given).",
)
_PROTOCOL = flags.DEFINE_enum(
    "protocol",
    "default",
    list(protocols.PRESETS),
    "metrics: an evaluation preset (attngan_jax/eval/protocols.py, docs/evaluation.md): the whole "
    "recipe of a published column; --metrics/--num_images/--batch_size override it (recorded).",
)
_DAMSM = flags.DEFINE_string(
    "damsm", None, "metrics, fixed_r_precision: the model directory whose DAMSM judges."
)
_RP_LIST = flags.DEFINE_string(
    "rp_list", None, "metrics, fixed_r_precision: the fixed caption list (.npz; drawn if missing)."
)
_CLIP = flags.DEFINE_string(
    "clip", None,
    "metrics: CLIP model directory (python -m attngan_jax.convert.clip) for clip_score and "
    "clip_r_precision; without it they are skipped.",
)  # fmt: skip
_CLIP_VARIANT = flags.DEFINE_enum(
    "clip_score_variant", "galip", ["galip", "clipscore"],
    "metrics: clip_score as GALIP's mean cosine x 100, or Hessel et al.'s 2.5 max(cos, 0) x 100.",
)  # fmt: skip
_CLIP_PIPELINE = flags.DEFINE_enum(
    "clip_pipeline", "", ["", "openai", "galip"],
    "metrics: CLIP preprocessing (''/unset: galip for clip_score, openai for clip_r_precision).",
)  # fmt: skip
_ALL = flags.DEFINE_bool(
    "all", False, "metrics: score every unscored model directory below --workdir."
)


def main(argv):
    """Runs the mode given by the flags; a bad input ends with one ``error:`` line, status 2."""
    with cli.report_input_errors():
        _run(argv)


def _run(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # keep library INFO lines out of the output
        logging.set_verbosity(logging.WARNING)
    compilation_cache.enable()
    if not _MODE.value:
        raise app.UsageError("--mode is required (sample, metrics or serve)")
    if _MODE.value == "serve":
        from attngan_jax.eval import serve

        serve.serve(_WORKDIR.value, host=_HOST.value, port=_PORT.value)
        return
    if _MODE.value == "sample":
        workdir = _WORKDIR.value or model_dir.SHIPPED_MODEL
        if bool(_CAPTIONS.value) == bool(_CAPTION.value):
            raise app.UsageError("give either --captions=FILE or --caption=TEXT (repeatable)")
        captions = eval_run.read_captions(_CAPTIONS.value) if _CAPTIONS.value else _CAPTION.value
        if not _OUTDIR.value and not _WORKDIR.value:
            raise app.UsageError("--outdir is required with the shipped model (no --workdir)")
        outdir = _OUTDIR.value or f"{model_dir.resolve(workdir)}/samples"
        paths = eval_run.sample(
            workdir, captions, outdir, num_samples=_NUM_SAMPLES.value, seed=_SEED.value,
            generator=_GENERATOR.value, truncation=_TRUNCATION.value, batch_size=_BATCH.value,
        )  # fmt: skip
        print(f"wrote {len(paths)} files to {outdir}")
        return
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required for metrics")
    from attngan_jax.eval.evaluators import evaluate

    preset = _PROTOCOL.value != "default"  # a preset's own values unless a flag is given
    kwargs = dict(
        data_dir=_DATA_DIR.value, num_images=_NUM_IMAGES.value,
        batch_size=_BATCH.value if not preset or flags.FLAGS["batch_size"].present else None,
        seed=_SEED.value, inception=_INCEPTION.value, inception_kind=_KIND.value,
        fid_inception=_FID_INCEPTION.value, fid_reference=_FID_REF.value,
        metrics=_METRICS.value if not preset or flags.FLAGS["metrics"].present else None,
        protocol=_PROTOCOL.value, damsm=_DAMSM.value, rp_list=_RP_LIST.value,
        clip=_CLIP.value, clip_score_variant=_CLIP_VARIANT.value,
        clip_pipeline=_CLIP_PIPELINE.value,
    )  # fmt: skip
    if _CLIP.value and not flags.FLAGS["metrics"].present:  # --clip alone asks for its metrics
        asked = kwargs["metrics"] or protocols.get(_PROTOCOL.value).metrics
        kwargs["metrics"] = [*asked, "clip_score", "clip_r_precision"]
    if _ALL.value:
        results = eval_run.evaluate_all(_WORKDIR.value, generator=_GENERATOR.value, **kwargs)
    else:
        results = {_WORKDIR.value: evaluate(_WORKDIR.value, generator=_GENERATOR.value, **kwargs)}
    for d, out in results.items():
        if out is None:
            continue
        print(f"{d} ({_GENERATOR.value}): {eval_run.format_metrics(out)}")


def run() -> None:
    """Runs the program on ``sys.argv`` (after :func:`attngan_jax.commands.prepare_process`)."""
    commands.present_as_main(sys.modules[__name__])
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
