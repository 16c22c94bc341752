"""CUB/COCO at scale: preparation and loader cost in CPU-seconds per image, on photograph JPEGs.

Usage::

    python benchmarks/data_scale.py [--images=1800] [--root=/tmp/attngan_data_scale] \
        [--prepare_workers=0,2] [--loader_workers=0,1,2] [--batches=4,14] [--json_file=F] \
        [--code=DIR]   # run the measured children on another checkout (before/after)

Makes (once) a COCO 2014 folder of ``--images`` photograph JPEGs (640x480 crops of the photographs
scikit-image ships, ~65 KB each; ``benchmarks/photos.py``) in the official layout plus the release's
pickles, and a CUB-200 folder of ~500x375 photo JPEGs with boxes; then

* **preparation** (``tfds_builders.prepare``, each worker count): CPU-seconds of the writing
  process and of its workers per image, bytes on disk per image and per source JPEG byte, and the
  estimate for all 123,287 COCO-2014 images on 16 cores: the workers' share spread over 15 cores,
  the writer's on one (whichever is slower);
* **the training loader** (``make_loader``, birds and coco GAN settings: pyramid 64/128/256, batch
  20 / 14, random crop and flip; each grain worker count): CPU-seconds per image from two runs of
  ``--batches`` lengths (the difference removes start-up), i.e. images/s per core, and the cores
  one H100 needs at ~550 images/s (birds256, bfloat16; docs/performance.md).

Every figure is process CPU time (``getrusage`` of the child and everything it waited for), not
wall time: our cores are shared. Each measurement runs in a fresh ``python`` child.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO_2014_IMAGES = 123_287
GPU_IMAGES_PER_S = 550  # birds256 bfloat16 training on one H100 (docs/performance.md)
SETTINGS = {  # name: (dataset, pyramid, batch, words)
    "birds": ("birds", (64, 128, 256), 20, 18),
    "coco": ("coco", (64, 128, 256), 14, 12),
}


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _child(code: str, *args: str) -> tuple[dict, float]:
    """Runs this file as a child on ``code``'s attngan_jax; (its JSON line, its total CPU s)."""
    env = dict(os.environ, PYTHONPATH=code, JAX_PLATFORMS="cpu")
    before = _cpu_children()
    res = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *args], env=env, cwd=code,
        capture_output=True, text=True,
    )  # fmt: skip
    cpu = _cpu_children() - before
    if res.returncode:
        raise RuntimeError(f"child {args} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1]), cpu


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


# ------------------------------------------------------------------------------ children


def child_prepare(dataset: str, manual: str, out: str, workers: int | None) -> dict:
    """Prepares ``dataset`` into ``out`` (overwriting); CPU of this process and its workers."""
    import tensorflow_datasets as tfds

    from attngan_jax.data import tfds_builders

    tfds.disable_progress_bar()
    kw = {} if workers is None else {"workers": workers}
    t0, c0, w0 = time.process_time(), _cpu_children(), time.perf_counter()
    path = tfds_builders.prepare(dataset, out, manual, overwrite=True, **kw)
    return {
        "path": path,
        "writer_cpu_s": time.process_time() - t0,
        "workers_cpu_s": _cpu_children() - c0,
        "wall_s": time.perf_counter() - w0,
    }


def child_load(path: str, setting: str, workers: int, batches: int) -> dict:
    """Draws ``batches`` batches of ``setting`` with ``workers`` grain workers."""
    from attngan_jax.data import pipeline

    _, sizes, batch, words = SETTINGS[setting]
    loader = pipeline.make_loader(
        path, "train", global_batch_size=batch, image_sizes=sizes, words_num=words, seed=0,
        worker_count=workers, worker_buffer_size=2, shard_index=0, shard_count=1,
    )  # fmt: skip
    it = iter(loader)
    for _ in range(batches):
        next(it)
    del it
    return {"batches": batches}


# ------------------------------------------------------------------------------ driver


def make_folders(root: str, images: int) -> dict:
    """The COCO and CUB photo folders (made once per ``root`` and size)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import photos

    out = {}
    for name, make in (
        ("coco", lambda d: photos.make_coco_folder(d, images, release=True)),
        ("birds", lambda d: photos.make_cub_folder(d, images)),
    ):
        d = os.path.join(root, f"{name}_{images}")
        info_file = os.path.join(d, "made.json")
        if not os.path.exists(info_file):
            info = make(d)
            with open(info_file, "w") as f:
                json.dump(info, f)
        with open(info_file) as f:
            out[name] = {"dir": d, **json.load(f)}
    return out


def measure_prepare(code: str, folder: dict, dataset: str, out: str, workers: int | None) -> dict:
    args = ["--child=prepare", f"--dataset={dataset}", f"--manual={folder['dir']}", f"--out={out}"]
    if workers is not None:
        args.append(f"--workers={workers}")
    r, total_cpu = _child(code, *args)
    n = folder["images"]
    disk = _dir_bytes(r["path"])
    cpu = r["writer_cpu_s"] + r["workers_cpu_s"]
    row = {
        "dataset": dataset, "workers": workers, "images": n, "cpu_s": cpu,
        "process_cpu_s": total_cpu, "images_per_cpu_s": n / cpu,
        "writer_ms_per_image": 1e3 * r["writer_cpu_s"] / n,
        "workers_ms_per_image": 1e3 * r["workers_cpu_s"] / n,
        "disk_bytes_per_image": disk / n, "disk_per_jpeg_byte": disk / folder["jpeg_bytes"],
        "wall_s_shared_machine": r["wall_s"], "path": r["path"],
    }  # fmt: skip
    if workers:  # 16 cores: workers on 15, the writer on 1
        rate = min(15e3 / row["workers_ms_per_image"], 1e3 / row["writer_ms_per_image"])
    else:  # one process does everything; more cores do not help
        rate = 1e3 / (row["writer_ms_per_image"] + row["workers_ms_per_image"])
    row["coco2014_minutes_16_cores"] = COCO_2014_IMAGES / rate / 60
    return row


def measure_loader(code: str, path: str, setting: str, workers: int, lengths) -> dict:
    k1, k2 = lengths
    cpu = []
    for k in (k1, k2):
        _, c = _child(code, "--child=load", f"--path={path}", f"--setting={setting}",
                      f"--loader_workers={workers}", f"--batches={k}")  # fmt: skip
        cpu.append(c)
    batch = SETTINGS[setting][2]
    ms = 1e3 * (cpu[1] - cpu[0]) / ((k2 - k1) * batch)
    return {
        "setting": setting, "workers": workers, "ms_per_image": ms,
        "images_per_cpu_s": 1e3 / ms, "cores_for_one_h100": GPU_IMAGES_PER_S * ms / 1e3,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1800)
    ap.add_argument("--root", default=os.path.join(tempfile.gettempdir(), "attngan_data_scale"))
    ap.add_argument("--prepare_workers", default="0,2", help="'none' for code without workers")
    ap.add_argument("--loader_workers", default="0,1,2")
    ap.add_argument("--batches", default="4,14", help="two run lengths (their difference counts)")
    ap.add_argument("--settings", default="birds,coco")
    ap.add_argument("--code", default=REPO, help="checkout whose attngan_jax is measured")
    ap.add_argument("--json_file", default="")
    # child modes
    ap.add_argument("--child", default="")
    ap.add_argument("--dataset", default="")
    ap.add_argument("--manual", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--path", default="")
    ap.add_argument("--setting", default="")
    a = ap.parse_args()
    if a.child:
        from attngan_jax.runtime import xla_flags

        xla_flags.apply()
        if a.child == "prepare":
            r = child_prepare(a.dataset, a.manual, a.out, a.workers)
        else:
            r = child_load(a.path, a.setting, int(a.loader_workers), int(a.batches))
        print(json.dumps(r))
        return

    folders = make_folders(a.root, a.images)
    tag = "".join(c if c.isalnum() else "_" for c in os.path.abspath(a.code))[-40:]
    results = {"images": a.images, "code": a.code, "prepare": [], "loader": []}
    paths = {}
    for setting in a.settings.split(","):
        dataset = SETTINGS[setting][0]
        for w in a.prepare_workers.split(","):
            workers = None if w == "none" else int(w)
            out = os.path.join(a.root, f"prepared_{tag}", f"{dataset}_{a.images}_w{w}")
            row = measure_prepare(a.code, folders[dataset], dataset, out, workers)
            paths[dataset] = row.pop("path")
            results["prepare"].append(row)
            print(
                f"prepare {dataset:5s} workers {w:>4}: {row['images_per_cpu_s']:6.1f} images/CPU-s "
                f"(writer {row['writer_ms_per_image']:.2f} ms, workers "
                f"{row['workers_ms_per_image']:.2f} ms per image), disk "
                f"{row['disk_bytes_per_image'] / 1e3:.1f} KB/image = "
                f"{row['disk_per_jpeg_byte']:.2f}x the JPEGs; COCO-2014 on 16 cores "
                f"~{row['coco2014_minutes_16_cores']:.1f} min",
                flush=True,
            )
    lengths = tuple(int(x) for x in a.batches.split(","))
    for setting in a.settings.split(","):
        for w in map(int, a.loader_workers.split(",")):
            row = measure_loader(a.code, paths[SETTINGS[setting][0]], setting, w, lengths)
            results["loader"].append(row)
            print(
                f"loader  {setting:5s} workers {w}: {row['images_per_cpu_s']:6.1f} images/CPU-s "
                f"({row['ms_per_image']:.2f} ms/image); one H100 (~{GPU_IMAGES_PER_S}/s) needs "
                f"{row['cores_for_one_h100']:.1f} cores",
                flush=True,
            )
    if a.json_file:
        with open(a.json_file, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
