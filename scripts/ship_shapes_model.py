r"""Regenerates the shapes model that ships with the package (``attngan_jax/assets/shapes``).

    python scripts/ship_shapes_model.py --train     # runs the README's main command, then copies
    python scripts/ship_shapes_model.py --workdir=runs/shapes   # copies a finished demo run

The shipped model is the shapes demo's exported model directory (``WORKDIR/attngan``: model.json,
vocab.json, the EMA generator and the DAMSM encoders; not the raw generator), so ``eval.py
--mode=serve`` and ``--mode=sample`` work right after install. ``provenance.json`` beside it
records the commit, the command and the run's final figures. The copy is written to a temporary
folder and renamed, so an interrupted copy leaves the previous model whole.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEST = os.path.join(REPO, "attngan_jax", "assets", "shapes")
PARTS = (
    "model.json",
    "vocab.json",
    os.path.join("model", "generator"),
    os.path.join("model", "damsm"),
)
COMMAND = [sys.executable, "train.py"]  # the README's main command (configs/shapes.py)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def ship(workdir: str, dest: str = DEST) -> dict:
    """Copies the demo run's model directory into ``dest``; returns the provenance record."""
    src = os.path.join(workdir, "attngan")
    summary_path = os.path.join(workdir, "summary.json")
    if not os.path.exists(summary_path):
        raise SystemExit(f"{workdir}: no summary.json, the run has not finished (use --train)")
    with open(summary_path) as f:
        summary = json.load(f)
    for part in PARTS:
        if not os.path.exists(os.path.join(src, part)):
            raise SystemExit(f"{src}: {part} is missing; is {workdir} a finished shapes demo run?")
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for part in PARTS:
        s, d = os.path.join(src, part), os.path.join(tmp, part)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        (shutil.copytree if os.path.isdir(s) else shutil.copy2)(s, d)
    record = {
        "what": "the shapes demo's exported model directory (EMA generator + DAMSM encoders)",
        "command": "python train.py",
        "commit": summary.get("commit") or _git("rev-parse", "HEAD"),
        "date": datetime.date.today().isoformat(),
        "final_step": summary.get("final_step"),
        "evaluation": (summary.get("evaluation") or {}).get("metrics"),
        "regenerate": "python scripts/ship_shapes_model.py --train",
    }
    with open(os.path.join(tmp, "provenance.json"), "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    old = dest + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(dest):
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return record


def main(argv=None) -> None:
    """CLI (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default=os.path.join(REPO, "runs", "shapes"))
    ap.add_argument("--train", action="store_true", help="run the README's main command first")
    a = ap.parse_args(argv)
    if a.train:
        subprocess.run([*COMMAND, f"--workdir={a.workdir}"], cwd=REPO, check=True)
    record = ship(a.workdir)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(DEST) for f in fs)
    print(f"shipped {a.workdir} -> {DEST} ({size / 1e6:.1f} MB), commit {record['commit'][:10]}")


if __name__ == "__main__":
    main()
