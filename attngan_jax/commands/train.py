"""Train DAMSM and/or AttnGAN.

    python train.py                       # the captioned-shapes demo (DAMSM then AttnGAN), runs/shapes
    python train.py --config=configs/attngan_birds.py --workdir=runs/birds --config.gan.batch_size=20
    attngan-train --config=shapes:tiny    # installed: the same program, packaged configs by name

Re-running with the same --workdir resumes from its last checkpoint. See README.md.
"""

from attngan_jax import commands

if __name__ == "__main__":  # python -m attngan_jax.commands.train (else commands.attngan_train)
    commands.prepare_process("train")  # XLA flags, malloc restart: before JAX is imported

import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from attngan_jax import cli, config_lib, configs  # noqa: E402
from attngan_jax.errors import InputError  # noqa: E402
from attngan_jax.runtime import compilation_cache  # noqa: E402
from attngan_jax.train import experiment, loop  # noqa: E402

try:  # ml_collections looks up the --config.a.b=... overrides here, before flags are parsed
    _CONFIG = config_flags.DEFINE_config_file(
        "config",
        configs.path(configs.DEFAULT),
        "Experiment config file (path[:variant]), or a packaged experiment's name: "
        f"{', '.join(configs.names())} (e.g. --config=shapes:tiny).",
        lock_config=True,
    )
except (AttributeError, KeyError):
    message = cli.unknown_override(config_lib.base_config(), sys.argv)
    if message is None:
        raise
    cli.fail(message)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default runs/<config name>).")


def main(argv):
    """Parses the config and runs training."""
    del argv
    if not flags.FLAGS["verbosity"].present:  # orbax/tfds INFO lines would drown the progress bar
        logging.set_verbosity(logging.WARNING)
    compilation_cache.enable()  # a second run of the same config starts in seconds
    try:
        config = _CONFIG.value
        _ = config.phase  # config_flags defers the error of a config file that did not load
    except OSError as e:
        cli.fail(cli.config_load_error(flags.FLAGS["config"].config_filename, e))
    workdir = _WORKDIR.value or f"runs/{config.data.name}"
    logging.info("workdir: %s", workdir)
    print(
        f"attngan-jax: phase={config.phase} dataset={config.data.name} workdir={workdir}",
        flush=True,
    )
    try:
        summary = experiment.train_and_evaluate(config, workdir)
    except loop.Preempted as e:  # a checkpoint was written: a message, not a traceback
        print(f"\n{e}", file=sys.stderr, flush=True)
        sys.exit(128 + e.signum)
    except InputError as e:  # a bad file, folder or config value: its message, no traceback
        cli.fail(e)
    print(f"done; summary in {workdir}/summary.json: final step {summary.get('final_step')}")


def run() -> None:
    """Runs the program on ``sys.argv`` (after :func:`attngan_jax.commands.prepare_process`)."""
    commands.present_as_main(sys.modules[__name__])
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
