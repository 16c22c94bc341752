"""host_memory: glibc malloc tunables by re-executing the entry points."""

import os
import subprocess
import sys

import pytest

from attngan_jax.runtime import host_memory as hm


def test_tuned_environ_appends_the_missing_tunables():
    env = hm.tuned_environ({"PATH": "/bin"}, (2, 36))
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    assert env["ATTNGAN_MALLOC_TUNED"] == "1" and env["PATH"] == "/bin"
    # a user's own tunables are kept, ours appended
    env = hm.tuned_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, (2, 36))
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize(
    "environ, glibc",
    [
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, (2, 36)),  # the user chose otherwise
        ({"ATTNGAN_KEEP_MALLOC": "1"}, (2, 36)),  # opted out
        ({"ATTNGAN_MALLOC_TUNED": "1"}, (2, 36)),  # already the re-executed process
        ({}, (2, 31)),  # glibc before hugetlb existed
        ({}, None),  # not glibc
    ],
)
def test_tuned_environ_leaves_these_alone(environ, glibc):
    assert hm.tuned_environ(environ, glibc) is None


def test_reexec_execs_the_same_command_with_the_tunables(monkeypatch):
    calls = []
    monkeypatch.setattr(hm, "glibc_version", lambda: (2, 36))
    monkeypatch.delenv("ATTNGAN_MALLOC_TUNED", raising=False)
    monkeypatch.delenv("ATTNGAN_KEEP_MALLOC", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    hm.reexec_with_malloc_tunables(execve=lambda *a: calls.append(a))
    ((path, argv, env),) = calls
    assert path == sys.executable and argv == sys.orig_argv
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"

    def failing(*a):
        raise OSError("exec failed")

    hm.reexec_with_malloc_tunables(execve=failing)  # goes on in the current process


@pytest.mark.skipif(
    (hm.glibc_version() or (0, 0)) < (2, 35), reason="needs glibc 2.35+ (glibc.malloc.hugetlb)"
)
def test_reexec_restarts_the_process_once_with_the_tunables():
    code = (
        "import os, sys; print('start', flush=True);"
        "from attngan_jax.runtime import host_memory; host_memory.reexec_with_malloc_tunables();"
        "print(os.environ['GLIBC_TUNABLES'], os.environ['ATTNGAN_MALLOC_TUNED'], sys.argv[1:])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATTNGAN_MALLOC", "GLIBC_TUN"))}
    env.pop("ATTNGAN_KEEP_MALLOC", None)
    out = subprocess.run(
        [sys.executable, "-c", code, "--flag=1"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert out[:2] == ["start", "start"]  # ran twice: the exec replaced the first process
    assert out[2] == "glibc.malloc.hugetlb=1 1 ['--flag=1']"


def test_put_leafwise_releases_each_host_array_once_copied(monkeypatch):
    import weakref

    import jax
    import numpy as np

    from attngan_jax.runtime import sharding

    refs = []

    def make():
        # float64: converted to float32 on the way, so no device array aliases its host array
        # (jax's CPU client may keep a matching aligned numpy buffer instead of copying it)
        tree = {"a": np.arange(6.0).reshape(2, 3), "b": [np.ones(4), np.zeros(())]}
        refs.extend(weakref.ref(x) for x in jax.tree_util.tree_leaves(tree))
        return tree

    alive_at_put = []
    put = jax.device_put

    def counting_put(x, *a, **k):
        alive_at_put.append(sum(r() is not None for r in refs))
        return put(x, *a, **k)

    assert not jax.config.jax_enable_x64
    monkeypatch.setattr(sharding.jax, "device_put", counting_put)
    mesh = sharding.make_mesh()
    out = sharding.put_leafwise(make, sharding.replicated(mesh))
    monkeypatch.undo()
    assert alive_at_put == [3, 2, 1]  # the host copies before each put: earlier ones are gone
    assert all(r() is None for r in refs)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure({"a": 0, "b": [0, 0]})
    np.testing.assert_array_equal(out["a"], np.arange(6.0).reshape(2, 3))
    assert out["b"][0].dtype == np.float32 and out["a"].sharding == sharding.replicated(mesh)
