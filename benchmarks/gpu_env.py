"""What the GPU side-by-side script can run here: imports, versions and devices, as shell variables.

    python benchmarks/gpu_env.py --json=F --shell=F [--device=cuda|cpu]
    python benchmarks/gpu_env.py --install_missing=WHEELS --target=DIR   # offline, --no-deps

Every module a stage needs is imported in a fresh interpreter, each in its own ``try`` (one failing
import does not hide the others); the report names each missing module and the first line of its error. ``--shell``
writes ``HAVE_TORCH``, ``HAVE_OURS`` (the benchmark step), ``HAVE_TRAIN`` (``train.py``) and
``JAX_PLATFORM`` for the script to ``source``. ``--install_missing`` installs, from a folder of
wheels (no network), only the distributions whose modules are missing, into ``--target`` (the
script puts it on ``PYTHONPATH``): a preinstalled package is never shadowed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys

# Modules per stage. The stage runs when all of its modules import.
TORCH = ["torch"]
OURS = ["jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "ml_collections", "numpy", "PIL",
        "attngan_jax.train.gan", "attngan_jax.train.damsm", "attngan_jax.eval.sampling"]  # fmt: skip
TRAIN = ["absl", "ml_collections.config_flags", "grain", "array_record", "tensorflow_datasets",
         "clu", "tensorboardX", "tqdm", "scipy", "attngan_jax.train.experiment",
         "attngan_jax.eval.evaluators"]  # fmt: skip
# module -> distribution (wheel name prefix, normalised) for --install_missing
DISTRIBUTIONS = {
    "ml_collections": ["ml_collections", "pyyaml"],
    "clu": ["clu", "wrapt", "etils"],
    "tensorboardX": ["tensorboardx"],
    "tensorflow_datasets": ["tensorflow_datasets", "tensorflow_metadata", "etils", "promise",
                            "immutabledict", "toml", "googleapis_common_protos", "wrapt", "six"],
    "grain": ["grain", "cloudpickle", "portpicker", "etils", "array_record"],
    "array_record": ["array_record", "etils"],
    "absl": ["absl_py"],
    "tqdm": ["tqdm"],
}  # fmt: skip


_PROBE = """
import importlib, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        m = importlib.import_module(name)
        out[name] = {"ok": True, "version": str(getattr(m, "__version__", "") or "")}
    except BaseException as e:  # noqa: BLE001
        out[name] = {"ok": False, "error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}
print(json.dumps(out))
"""


def probe(modules: list[str]) -> dict[str, dict]:
    """``{module: {"ok", "version" | "error"}}``, all imported in one fresh interpreter, each
    in its own ``try`` (a failing import does not hide the others)."""
    p = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, timeout=300
    )
    if p.returncode == 0 and p.stdout.strip():
        return json.loads(p.stdout.strip().splitlines()[-1])
    err = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
    return {m: {"ok": False, "error": f"the import probe crashed: {err}"} for m in modules}


def _devices(device: str) -> dict:
    out: dict = {}
    code = (
        "import json, torch\n"
        "d = {'torch': torch.__version__, 'torch_cuda': torch.version.cuda,\n"
        "     'torch_cuda_available': torch.cuda.is_available()}\n"
        "if d['torch_cuda_available']: d['torch_device'] = torch.cuda.get_device_name()\n"
        "print(json.dumps(d))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if p.returncode == 0:
        out.update(json.loads(p.stdout.strip().splitlines()[-1]))
    env = dict(os.environ)
    if device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    code = (
        "import json, jax\n"
        "d = jax.devices()[0]\n"
        "print(json.dumps({'jax': jax.__version__, 'jax_platform': d.platform,\n"
        "                  'jax_device': d.device_kind, 'jax_device_count': jax.device_count()}))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env
    )
    if p.returncode == 0:
        out.update(json.loads(p.stdout.strip().splitlines()[-1]))
    else:
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        out["jax_error"] = lines[-1] if lines else f"exit {p.returncode}"
    return out


def report(device: str) -> dict:
    """Imports of every stage's modules, the devices torch and JAX see, and what can run."""
    mods = probe(list(dict.fromkeys(TORCH + OURS + TRAIN)))
    dev = _devices(device)
    ok = lambda names: all(mods[m]["ok"] for m in names)  # noqa: E731
    want_gpu = device == "cuda"
    have_torch = ok(TORCH) and (dev.get("torch_cuda_available", False) or not want_gpu)
    jax_gpu = dev.get("jax_platform") in ("gpu", "cuda", "rocm")
    have_ours = ok(OURS) and (jax_gpu or not want_gpu)
    have_train = have_ours and ok(TRAIN)
    return {
        "python": sys.version.split()[0],
        "device": device,
        "modules": mods,
        "missing": sorted(m for m, r in mods.items() if not r["ok"]),
        **dev,
        "HAVE_TORCH": int(have_torch),
        "HAVE_OURS": int(have_ours),
        "HAVE_TRAIN": int(have_train),
    }


def install_missing(wheels: str, target: str) -> list[str]:
    """Installs (offline, ``--no-deps``) the wheels of the missing modules' distributions."""
    missing = [m for m, r in probe(list(DISTRIBUTIONS)).items() if not r["ok"]]
    want = {d for m in missing for d in DISTRIBUTIONS[m]}
    files = []
    for path in sorted(glob.glob(os.path.join(wheels, "*"))):
        name = re.split(r"-\d", os.path.basename(path), maxsplit=1)[0].lower().replace("-", "_")
        if name in want:
            files.append(path)
    if not files:
        return []
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile",
           "--no-build-isolation", "--target", target, "--find-links", wheels]  # fmt: skip
    # pip picks the wheel of this interpreter among the cp311/cp312/cp313 ones of a distribution
    names = sorted({re.split(r"-\d", os.path.basename(f), maxsplit=1)[0] for f in files})
    done = []
    for name in names:  # one at a time: a wheel that does not fit this Python skips only itself
        if subprocess.run([*cmd, name], check=False).returncode == 0:
            done.append(name)
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--json", default="")
    ap.add_argument("--shell", default="")
    ap.add_argument("--install_missing", default="", help="a folder of wheels")
    ap.add_argument("--target", default="")
    a = ap.parse_args(argv)
    if a.install_missing:
        names = install_missing(a.install_missing, a.target)
        print(f"installed from {a.install_missing} into {a.target}: {names or 'nothing'}")
        return 0
    r = report(a.device)
    for m in r["missing"]:
        print(f"MISSING {m}: {r['modules'][m]['error']}")
    print(
        f"python {r['python']}; torch {r.get('torch')} (CUDA {r.get('torch_cuda')}, available "
        f"{r.get('torch_cuda_available')}, {r.get('torch_device', '-')}); jax {r.get('jax')} "
        f"on {r.get('jax_platform')} ({r.get('jax_device', r.get('jax_error'))})"
    )
    print(f"can run: torch {r['HAVE_TORCH']}, ours {r['HAVE_OURS']}, train.py {r['HAVE_TRAIN']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    if a.shell:
        with open(a.shell, "w") as f:
            for k in ("HAVE_TORCH", "HAVE_OURS", "HAVE_TRAIN"):
                f.write(f"{k}={r[k]}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
