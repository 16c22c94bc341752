"""A user who installs the package: the wheel alone samples, serves and trains (issue 33).

Builds the wheel from the package's files (a copy: nothing is written into the checkout), installs
it with ``--no-deps`` into a fresh virtual environment that reuses this interpreter's installed
dependencies (nothing is downloaded), then, from a folder outside the checkout and without
``PYTHONPATH``, runs the console scripts as a user does: ``attngan-eval --mode=sample`` and
``attngan-serve`` with the shipped model, and ``attngan-train --config=shapes:tiny``. Every process
start is recorded (a ``.pth`` probe in that environment), which shows the malloc-tunables restart
re-executing the console script itself with all its arguments.
"""

import base64
import json
import os
import shutil
import site
import subprocess
import sys
import urllib.request
import zipfile

import pytest
from paths import REPO

from attngan_jax.runtime import host_memory

pytestmark = pytest.mark.slow

PACKAGE_FILES = ("setup.cfg", "pyproject.toml", "README.md")  # what setuptools reads besides it
SCRIPTS = ("attngan-train", "attngan-eval", "attngan-serve")
# A .pth line runs at every start of the environment's interpreter: it appends, per process start,
# whether the malloc restart has happened (host_memory's mark) and the command line. (site may read
# the folder twice, as lib/ and its lib64/ link: the mark on sys records each start once.)
PROBE = (
    "import os, sys, json; p = os.environ.get('ATTNGAN_TEST_STARTS'); "
    "p and not hasattr(sys, '_attngan_probed') and open(p, 'a').write(json.dumps("
    "[os.environ.get('ATTNGAN_MALLOC_TUNED'), sys.orig_argv[1:]]) + chr(10)); "
    "sys._attngan_probed = 1\n"
)


def _package_files() -> list[str]:
    """The checkout's files of the package (tracked or new, not ignored), relative to REPO."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "--", "attngan_jax"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout.split("\n")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist): every file
        out = [
            os.path.relpath(os.path.join(root, f), REPO)
            for root, dirs, files in os.walk(os.path.join(REPO, "attngan_jax"))
            for f in files
            if "__pycache__" not in root
        ]
    return sorted(f for f in out if f and os.path.isfile(os.path.join(REPO, f)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel path, the fresh environment's bin folder, a work folder outside the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    src, dist, venv = root / "src", root / "dist", root / "venv"
    for rel in (*PACKAGE_FILES, *_package_files()):
        os.makedirs(os.path.dirname(src / rel), exist_ok=True)
        shutil.copy2(os.path.join(REPO, rel), src / rel)
    # The installed setuptools, no download: what works offline.
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    r = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = dist.glob("attngan_jax-*.whl")

    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True, timeout=300,
    )  # fmt: skip
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    lines = [PROBE]
    if sys.prefix != sys.base_prefix:  # this interpreter is itself a venv: reuse its packages too
        lines += [f"import site; site.addsitedir({d!r})\n" for d in site.getsitepackages()]
    with open(os.path.join(purelib, "_attngan_test_parent.pth"), "w") as f:
        f.writelines(lines)
    r = subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index",
         str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    work = root / "user"
    work.mkdir()
    return wheel, venv / "bin", work


def _env(work, starts=None) -> dict:
    """A user's environment: no PYTHONPATH (the checkout must not be importable), no opt-outs."""
    drop = ("PYTHONPATH", "ATTNGAN_KEEP_MALLOC", "ATTNGAN_TEST_STARTS", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["JAX_PLATFORMS"] = "cpu"
    env["ATTNGAN_JAX_CACHE"] = str(work / ".jax_cache")  # not the developer's ~/.cache
    if starts:
        env["ATTNGAN_TEST_STARTS"] = str(starts)
    return env


def _run(bin_dir, work, script, *args, starts=None, timeout=600):
    return subprocess.run(
        [str(bin_dir / script), *args],
        capture_output=True, text=True, cwd=work, env=_env(work, starts), timeout=timeout,
    )  # fmt: skip


def _assert_restarted_as_itself(starts, script: str, args: list[str]) -> None:
    """One start as the user typed it, then (glibc 2.35+) the same command with the tunables."""
    records = [json.loads(line) for line in starts.read_text().splitlines()]
    command = [script, *args]
    if host_memory.tuned_environ({}, host_memory.glibc_version()) is None:
        assert records == [[None, command]]
    else:
        assert records == [[None, command], ["1", command]], records


def test_the_wheel_holds_the_package_and_its_scripts(installed):
    wheel, bin_dir, _ = installed
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = z.read(entry_points).decode()
    missing = [f for f in _package_files() if f.replace(os.sep, "/") not in names]
    assert not missing, missing  # every module, the page, the configs and the shipped model
    assert any(n.startswith("attngan_jax/assets/shapes/model/generator/") for n in names)
    for script in SCRIPTS:
        assert f"{script} = attngan_jax.commands:" in scripts
        assert (bin_dir / script).exists()


def test_the_installed_package_is_imported_not_the_checkout(installed):
    _, bin_dir, work = installed
    r = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import attngan_jax.commands, attngan_jax.configs as c; print(attngan_jax.__file__);"
         "print(c.path('shapes'))"],
        capture_output=True, text=True, cwd=work, env=_env(work), timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    package, config = r.stdout.split()
    venv = os.path.dirname(str(bin_dir))
    assert package.startswith(venv + os.sep) and not package.startswith(REPO + os.sep), package
    assert config.startswith(venv + os.sep) and os.path.isfile(config)


def test_attngan_eval_samples_with_the_shipped_model(installed):
    _, bin_dir, work = installed
    starts = work / "starts_eval.jsonl"
    args = [
        "--mode=sample",
        "--caption=a red circle on the left",
        "--num_samples=2",
        "--outdir=out",
    ]
    r = _run(bin_dir, work, "attngan-eval", *args, starts=starts)
    assert r.returncode == 0, r.stderr[-3000:]
    pngs = sorted(p.name for p in (work / "out").glob("*.png"))
    assert len(pngs) >= 2, (pngs, r.stdout)
    _assert_restarted_as_itself(starts, str(bin_dir / "attngan-eval"), args)


def test_attngan_serve_answers_info_and_generate(installed):
    _, bin_dir, work = installed
    p = subprocess.Popen(
        [str(bin_dir / "attngan-serve"), "--port=0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work, env=_env(work),
    )  # fmt: skip
    try:
        line = p.stdout.readline()
        assert "http://127.0.0.1:" in line, (line, p.stderr.read() if p.poll() is not None else "")
        port = line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0]
        base = f"http://127.0.0.1:{port}"  # urllib sends Host: 127.0.0.1:PORT (the loopback)
        with urllib.request.urlopen(f"{base}/api/info", timeout=120) as r:
            info = json.loads(r.read())
        assert info["dataset"] == "shapes" and info["model_dir"].startswith(str(bin_dir.parent))
        body = json.dumps({"caption": "a blue square", "seed": 3, "num_samples": 1}).encode()
        request = urllib.request.Request(
            f"{base}/api/generate", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=300) as r:
            out = json.loads(r.read())
        stages = out["results"][0]["samples"][0]["stages"]
        assert [s["size"] for s in stages] == info["stages"]
        assert base64.b64decode(stages[-1]["png"]).startswith(b"\x89PNG")
    finally:
        p.terminate()
        p.wait(timeout=60)


def test_attngan_train_runs_the_packaged_tiny_shapes_demo(installed):
    _, bin_dir, work = installed
    starts = work / "starts_train.jsonl"
    args = ["--config=shapes:tiny", "--workdir=run"]
    r = _run(bin_dir, work, "attngan-train", *args, starts=starts)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    summary = json.loads((work / "run" / "summary.json").read_text())
    assert summary["final_step"] > 0, summary
    assert (work / "data" / "shapes").is_dir()  # the dataset was generated beside the user
    _assert_restarted_as_itself(starts, str(bin_dir / "attngan-train"), args)
