r"""Draws the README's figure of the shapes demo: test captions, the model's image, the oracle's verdicts.

    python scripts/demo_figure.py --out=docs/shapes_two_objects_demo.png            # shipped model
    python scripts/demo_figure.py --model=runs/shapes/attngan --objects=1 --out=one.png

Takes the first caption of each test record of the prepared shapes dataset (``--data``), keeps
the first ``--num`` that name ``--objects`` objects, generates one image per caption with the
model's EMA generator (seed ``--seed``, the last stage, upscaled 4x) and writes a grid of
(image, caption, verdicts of :func:`attngan_jax.data.shapes.oracle.check`) cells; verdicts that
fail are drawn in red, the others in green. The PNG is written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from attngan_jax.runtime import xla_flags  # noqa: E402

xla_flags.apply()

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from attngan_jax.data import pipeline  # noqa: E402
from attngan_jax.data.shapes import oracle, parse  # noqa: E402
from attngan_jax.data.vocab import Vocabulary  # noqa: E402
from attngan_jax.eval import sampling  # noqa: E402
from attngan_jax.visualize import save_png  # noqa: E402

SHOWN = ("colour_single", "shape_single", "count_single", "position", "both_colours", "shape_pair")


def test_captions(data: str, objects: int, num: int) -> list[str]:
    """The first caption of each test record, in record order, that names ``objects`` objects."""
    vocab = Vocabulary.load(pipeline.vocabulary_path(data))
    caps = pipeline.split_captions(data, "test")
    out = []
    for r in range(len(caps["num_caps"])):
        c = caps["cap_start"][r]
        ids = caps["tokens"][caps["tok_start"][c] : caps["tok_start"][c + 1]]
        text = " ".join(vocab.ixtoword[int(i)] for i in ids)
        if len(parse.parse_caption(text).objects) == objects:
            out.append(text)
        if len(out) == num:
            break
    if len(out) < num:
        raise SystemExit(f"{data}: only {len(out)} test captions name {objects} object(s)")
    return out


def cell(image: np.ndarray, caption: str, verdicts: dict[str, bool], scale: int = 4) -> Image.Image:
    """One (image, text) cell: the image upscaled ``scale`` x, then the caption and the verdicts."""
    img = Image.fromarray(np.round(oracle.to_rgb255(image)).astype(np.uint8)).resize(
        (image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST
    )
    side = img.size[1]
    out = Image.new("RGB", (side + 200, side), "white")
    out.paste(img, (0, 0))
    draw = ImageDraw.Draw(out)
    y = 4
    for line in textwrap.wrap(caption, 30):
        draw.text((side + 6, y), line, fill="black")
        y += 12
    y = max(y + 6, side - 12 * sum(k in verdicts for k in SHOWN) - 4)
    for key in SHOWN:
        if key in verdicts:
            ok = verdicts[key]
            draw.text(
                (side + 6, y), f"{key}: {'yes' if ok else 'no'}", fill=(0, 140, 0) if ok else "red"
            )
            y += 12
    return out


def main(argv=None) -> None:
    """Parses the flags, generates the images and writes the figure."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory; default: the shipped model")
    ap.add_argument("--data", default="data/shapes/attngan_shapes/2.0.0", help="prepared dataset")
    ap.add_argument("--objects", type=int, default=2, choices=(1, 2))
    ap.add_argument("--num", type=int, default=24)
    ap.add_argument("--cols", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if not os.path.isdir(a.data):
        raise SystemExit(
            f"--data={a.data}: no prepared shapes dataset there (python train.py makes one)"
        )
    captions = test_captions(a.data, a.objects, a.num)
    images = sampling.generate(a.model, captions, num_samples=1, seed=a.seed)["images"][-1][:, 0]
    cells = [cell(im, c, oracle.check(im, c)) for im, c in zip(images, captions)]
    w, h = cells[0].size
    rows = -(-len(cells) // a.cols)
    grid = Image.new("RGB", (a.cols * w, rows * h), "white")
    for i, c in enumerate(cells):
        grid.paste(c, ((i % a.cols) * w, (i // a.cols) * h))
    save_png(a.out, np.asarray(grid))
    print(f"wrote {a.out}: {len(cells)} captions")


if __name__ == "__main__":
    main()
