r"""How well the shapes oracle reads the dataset's own renders, sharp and blurred (docs/shapes_demo.md).

    python scripts/oracle_calibration.py [--num=300]

Renders the first ``num`` test scenes of the demo's dataset at 16, 32 and 64 px, blurs them with a
Gaussian of sigma 0, 0.5 and 1 px, and prints, per size and blur, the share of objects whose shape
the oracle reads right, of images whose object count it reads right, and its verdict on the
images' own captions (two per image) for every criterion, as a Markdown table.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from attngan_jax.data.shapes import oracle, scene
from attngan_jax.data.shapes.source import ShapesSource


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 image blurred per channel by a Gaussian of ``sigma`` pixels."""
    if not sigma:
        return image
    out = np.stack([ndimage.gaussian_filter(image[..., c].astype(float), sigma) for c in range(3)])
    return np.clip(np.rint(np.moveaxis(out, 0, -1)), 0, 255).astype(np.uint8)


def calibrate(num: int, sizes=(16, 32, 64), sigmas=(0.0, 0.5, 1.0)) -> list[dict]:
    """One row per (size, sigma): accuracies of shapes, counts and every criterion."""
    src = ShapesSource(num_train=1, num_test=num, image_size=64)
    rows = []
    for size in sizes:
        for sigma in sigmas:
            hits: dict[str, int] = {}
            total: dict[str, int] = {}

            def add(key: str, ok: bool, hits=hits, total=total) -> None:
                hits[key] = hits.get(key, 0) + int(ok)
                total[key] = total.get(key, 0) + 1

            for i in range(num):
                sc = src.scene("test", i)
                img = blur(scene.render(sc, size, i), sigma)
                found = oracle.detect_objects(img)
                add("count", len(found) == len(sc.objects))
                for ob in sc.objects:
                    match = [o for o in found if o.colour == ob.colour]
                    add("shape", bool(match) and match[0].shape == ob.shape)
                for caption in src.caption_texts("test", i)[:2]:
                    for criterion, ok in oracle.check(img, caption).items():
                        add(criterion, ok)
            rows.append(
                {"size": size, "sigma": sigma, **{k: hits[k] / total[k] for k in sorted(total)}}
            )
    return rows


def main(argv=None) -> None:
    """CLI (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num", type=int, default=300, help="test scenes")
    a = ap.parse_args(argv)
    rows = calibrate(a.num)
    keys = ["shape", "count", *oracle.CRITERIA]
    print(f"{a.num} test scenes of the demo's dataset, two captions each\n")
    print("| size | blur sigma | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    for r in rows:
        cells = " | ".join(f"{100 * r[k]:.1f} %" for k in keys)
        print(f"| {r['size']} | {r['sigma']} | {cells} |")


if __name__ == "__main__":
    main()
