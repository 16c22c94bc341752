"""Train DAMSM and/or AttnGAN.

    python train.py                       # the captioned-shapes demo (DAMSM then AttnGAN), runs/shapes
    python train.py --config=configs/attngan_birds.py --workdir=runs/birds --config.gan.batch_size=20

Re-running with the same --workdir resumes from its last checkpoint. See README.md.
"""

from attngan_jax import host_memory  # also sets the XLA:CPU flags before JAX starts

if __name__ == "__main__":  # glibc reads its malloc tunables only at start-up: restart with them
    host_memory.reexec_with_malloc_tunables()

import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from attngan_jax import compilation_cache, train_lib  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/shapes.py", "Experiment config file (path[:variant]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default runs/<config name>).")


def main(argv):
    """Parses the config and runs training."""
    del argv
    if not flags.FLAGS["verbosity"].present:  # orbax/tfds INFO lines would drown the progress bar
        logging.set_verbosity(logging.WARNING)
    compilation_cache.enable()  # a second run of the same config starts in seconds
    config = _CONFIG.value
    workdir = _WORKDIR.value or f"runs/{config.data.name}"
    logging.info("workdir: %s", workdir)
    print(
        f"attngan-jax: phase={config.phase} dataset={config.data.name} workdir={workdir}",
        flush=True,
    )
    try:
        summary = train_lib.train_and_evaluate(config, workdir)
    except train_lib.Preempted as e:  # a checkpoint was written: a message, not a traceback
        print(f"\n{e}", file=sys.stderr, flush=True)
        sys.exit(128 + e.signum)
    print(f"done; summary in {workdir}/summary.json: final step {summary.get('final_step')}")


if __name__ == "__main__":
    app.run(main)
