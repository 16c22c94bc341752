"""What the evaluations during training cost: their share of a finished run's wall time, per phase.

    python train.py --workdir=runs/shapes          # the demo, on an otherwise idle machine
    python benchmarks/eval_overhead.py --workdir=runs/shapes

Per phase directory (``damsm/``, ``attngan/``): the phase's wall time is from
``parameters.txt`` (written when its training starts) to ``phase.json`` (written when it has
finished and exported); the evaluations' time is the sum of ``seconds`` over every entry of
``eval/<step>.json``. Prints both and ``overhead = evaluations / (wall - evaluations)``, the time the
evaluations add to training without them (the shapes config aims at <= 10 % for the GAN phase).
Only meaningful for a run that was not interrupted (a resumed run's evaluations replay).
"""

import argparse
import glob
import json
import os


def phase_overhead(phase_dir: str) -> dict | None:
    """``{"wall_s", "eval_s", "evaluations", "overhead"}`` of a finished phase, else None."""
    start, end = (os.path.join(phase_dir, n) for n in ("parameters.txt", "phase.json"))
    if not (os.path.exists(start) and os.path.exists(end)):
        return None
    wall = os.path.getmtime(end) - os.path.getmtime(start)
    seconds, count = 0.0, 0
    for path in glob.glob(os.path.join(phase_dir, "eval", "*.json")):
        if not os.path.basename(path)[:-5].isdigit():
            continue  # eval/metrics_*.json: the offline evaluation at the end, not during training
        with open(path) as f:
            for entry in json.load(f).values():
                seconds += float(entry.get("seconds", 0.0))
                count += 1
    train = max(wall - seconds, 1e-9)
    return {"wall_s": wall, "eval_s": seconds, "evaluations": count, "overhead": seconds / train}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="a finished run (demo: both phases inside)")
    a = ap.parse_args()
    dirs = [a.workdir] + [os.path.join(a.workdir, p) for p in ("damsm", "attngan")]
    for d in dirs:
        r = phase_overhead(d)
        if r is not None:
            print(
                f"{d}: wall {r['wall_s']:.0f} s, {r['evaluations']} evaluations "
                f"{r['eval_s']:.1f} s, overhead {100 * r['overhead']:.1f} %"
            )


if __name__ == "__main__":
    main()
