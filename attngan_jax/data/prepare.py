r"""Command line: prepare a dataset as TFDS ArrayRecord for the grain pipeline.

Usage::

    python -m attngan_jax.data.prepare --dataset=birds --manual_dir=data/birds --data_dir=tfds
    python -m attngan_jax.data.prepare --dataset=coco --manual_dir=data/coco --data_dir=tfds
    python -m attngan_jax.data.prepare --dataset=custom --manual_dir=my/captioned_images \
        --data_dir=tfds --source_kwargs='{"captions_per_image": 5}'
    python -m attngan_jax.data.prepare --dataset=shapes --data_dir=tfds \
        --source_kwargs='{"num_train": 2000, "num_test": 500, "image_size": 64}'

``--manual_dir`` is the original tree (the ``data/birds`` / ``data/coco`` folder of the original
release, or a custom caption folder); shapes are generated procedurally. The prepared dataset lands
in ``<data_dir>/attngan_<dataset>/1.0.0`` (printed at the end) together with ``vocab.json``; pass
that path to ``attngan_jax.data.pipeline.make_loader``. A complete dataset is reused unless
``--overwrite``; an interrupted run leaves only an ``incomplete.*`` folder that the next run
ignores.
"""

from __future__ import annotations

import json

from absl import app, flags

_DATASET = flags.DEFINE_enum(
    "dataset", None, ["birds", "coco", "custom", "shapes"], "Dataset to prepare."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Root folder of prepared datasets.")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Original files (birds/coco/custom); unused for shapes."
)
_SOURCE_KWARGS = flags.DEFINE_string(
    "source_kwargs", "{}", "JSON object of extra keyword arguments for the source constructor."
)
_IMAGE_FORMAT = flags.DEFINE_enum(
    "image_format",
    "png",
    ["png", "jpeg"],
    "Encoding of drawn images (shapes; png is lossless). Image files are stored as they are.",
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Regenerate even if a complete dataset exists.")
_WORKERS = flags.DEFINE_integer(
    "workers",
    None,
    "Processes that decode and check the image files while one writes the records "
    "(default: one per CPU; 0: all in this process).",
)


def main(argv: list[str]) -> None:
    """Prepares ``--dataset`` and prints the dataset directory."""
    from attngan_jax.runtime import xla_flags

    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import tensorflow_datasets as tfds

    from attngan_jax.data.tfds_builders import prepare

    source_kwargs = json.loads(_SOURCE_KWARGS.value)
    if not isinstance(source_kwargs, dict):
        raise app.UsageError("--source_kwargs must be a JSON object")
    tfds.disable_progress_bar()  # our bar (with the split size as total) replaces TFDS's
    from attngan_jax.cli import report_input_errors

    with report_input_errors():  # a bad input: one "error:" line, exit 2
        path = prepare(
            _DATASET.value,
            _DATA_DIR.value,
            _MANUAL_DIR.value,
            image_format=_IMAGE_FORMAT.value,
            overwrite=_OVERWRITE.value,
            progress=True,
            workers=_WORKERS.value,
            **source_kwargs,
        )
    print(path)


if __name__ == "__main__":
    flags.mark_flags_as_required(["dataset", "data_dir"])
    app.run(main)
