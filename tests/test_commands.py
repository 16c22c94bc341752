"""attngan_jax.commands and attngan_jax.configs: how train.py, eval.py and the console scripts start.

The installed console scripts themselves run in tests/test_wheel.py (slow: it builds the wheel).
"""

import os
import subprocess
import sys
import textwrap

import pytest
from paths import REPO

from attngan_jax import configs
from attngan_jax.runtime import host_memory, xla_flags

SHAPES = configs.path("shapes")


def test_every_top_level_config_is_the_packaged_one():
    """configs/NAME.py in a clone re-exports attngan_jax/configs/NAME.py: one source of truth."""
    import importlib.util

    top = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "configs")) if f.endswith(".py"))
    assert top == configs.names()
    for name in top:
        path = os.path.join(REPO, "configs", f"{name}.py")
        spec = importlib.util.spec_from_file_location("c", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        packaged = __import__(f"attngan_jax.configs.{name}", fromlist=["get_config"])
        assert module.get_config is packaged.get_config and module.__doc__ == packaged.__doc__


@pytest.mark.parametrize(
    "value, expected",
    [
        ("shapes", SHAPES),
        ("shapes:tiny", f"{SHAPES}:tiny"),
        ("shapes.py:attngan", f"{SHAPES}:attngan"),
        ("configs/damsm_birds.py:tiny", f"{configs.path('damsm_birds')}:tiny"),  # outside a clone
        ("nope:tiny", "nope:tiny"),  # not packaged: the config flag reports the missing file
        ("elsewhere/shapes.py", "elsewhere/shapes.py"),  # another folder's file is not ours
        ("", ""),
    ],
)
def test_resolve_names_the_packaged_file(value, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here, as for a wheel user
    assert configs.resolve(value) == expected


def test_resolve_keeps_an_existing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "shapes.py").write_text("def get_config(arg=None): ...\n")
    (tmp_path / "shapes").write_text("")  # a file named like an experiment wins too
    assert configs.resolve("configs/shapes.py:tiny") == "configs/shapes.py:tiny"
    assert configs.resolve("shapes") == "shapes"


def test_resolve_argv_both_flag_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["prog", "--config", "shapes:tiny", "--config.gan.batch_size=2", "--workdir=shapes"]
    assert configs.resolve_argv(argv) == [
        "prog", "--config", f"{SHAPES}:tiny", "--config.gan.batch_size=2", "--workdir=shapes",
    ]  # fmt: skip
    assert configs.resolve_argv(["p", "-config=shapes"]) == ["p", f"-config={SHAPES}"]


def _console_script(path, module: str, function: str) -> None:
    """A console script as pip writes one (shebang: this interpreter) for ``module:function``."""
    path.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            f"""\
            import re, sys
            from {module} import {function}
            if __name__ == "__main__":
                sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
                sys.exit({function}())
            """
        )
    )
    path.chmod(0o755)


def test_a_console_script_restarts_as_itself_with_the_tunables(tmp_path, monkeypatch):
    """The malloc restart re-executes the console script (its path, every argument), once."""
    if host_memory.tuned_environ({}, host_memory.glibc_version()) is None:
        pytest.skip("not glibc 2.35+: no restart")
    # A stand-in program: prepare_process as every start does it, then what the process sees.
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            """\
            import os, sys
            from attngan_jax import commands

            def main():
                commands.prepare_process("train")
                print(os.environ.get("ATTNGAN_MALLOC_TUNED"), os.environ["GLIBC_TUNABLES"])
                print(os.environ.get("XLA_FLAGS"))
                print("\\n".join(sys.argv))
            """
        )
    )
    script = tmp_path / "bin" / "attngan-probe"
    script.parent.mkdir()
    _console_script(script, "probe", "main")
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv("ATTNGAN_KEEP_MALLOC", raising=False)
    env = dict(os.environ)
    xla_flags.apply()  # what the program's own apply() gives in this environment
    expected_xla = os.environ.get("XLA_FLAGS", "None")
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), REPO])
    work = tmp_path / "elsewhere"
    work.mkdir()
    r = subprocess.run(
        [str(script), "--config=shapes:tiny", "--workdir=w w"],
        capture_output=True, text=True, env=env, cwd=work, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    tuned, xla, *argv = r.stdout.splitlines()
    assert tuned.startswith("1 ") and "glibc.malloc.hugetlb=1" in tuned  # the restarted process
    assert xla == expected_xla  # applied before the restart, kept by it
    assert argv == [str(script), f"--config={SHAPES}:tiny", "--workdir=w w"]


def test_attngan_serve_refuses_another_mode():
    r = subprocess.run(
        [sys.executable, "-m", "attngan_jax.commands.serve", "--mode=sample"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: attngan-serve is attngan-eval --mode=serve"), r.stderr
