"""Persistent compilation cache: entries are written, reused by a fresh process, env overrides."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp

from attngan_jax.runtime import compilation_cache

_CHILD = textwrap.dedent(
    """
    import sys, time
    import attngan_jax
    from attngan_jax.runtime import compilation_cache
    import jax, jax.numpy as jnp
    from jax._src import monitoring
    hits = []
    monitoring.register_event_listener(
        lambda name, **kw: hits.append(name) if name.endswith("cache_hits") else None)
    compilation_cache.enable(sys.argv[1])

    @jax.jit
    def f(x):
        for _ in range(20):
            x = jnp.tanh(x @ x.T) + 1.0
        return x.sum()

    print(float(f(jnp.ones((32, 32)))), len(hits))
    """
)


def _run_child(cache: str) -> tuple[float, int]:
    env = dict(os.environ)
    env.pop("ATTNGAN_JAX_CACHE", None)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, cache], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    return float(out[0]), int(out[1])


def test_second_process_hits_the_cache(tmp_path):
    cache = str(tmp_path / "cache")
    v1, hits1 = _run_child(cache)
    entries = os.listdir(cache)
    assert entries, "no cache entry written for a small CPU program"
    v2, hits2 = _run_child(cache)
    assert v1 == v2
    assert hits1 == 0
    assert hits2 >= 1
    assert sorted(os.listdir(cache)) == sorted(entries)  # nothing new compiled and stored


def test_enable_sets_config_and_env_override(tmp_path, monkeypatch):
    session_dir = jax.config.jax_compilation_cache_dir  # conftest's session cache
    session_min = jax.config.jax_persistent_cache_min_compile_time_secs
    try:
        d = compilation_cache.enable(str(tmp_path / "c"))
        assert d == str(tmp_path / "c") and os.path.isdir(d)
        assert jax.config.jax_compilation_cache_dir == d
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
        jax.jit(lambda x: x * 3 + 1)(jnp.arange(7.0)).block_until_ready()
        assert os.listdir(d)
        monkeypatch.setenv("ATTNGAN_JAX_CACHE", str(tmp_path / "env"))
        assert compilation_cache.default_dir() == str(tmp_path / "env")
        monkeypatch.setenv("ATTNGAN_JAX_CACHE", "off")
        assert compilation_cache.default_dir() is None
        assert compilation_cache.enable() is None
        monkeypatch.delenv("ATTNGAN_JAX_CACHE")
        assert compilation_cache.default_dir().endswith(os.path.join("attngan_jax", "jax_cache"))
    finally:
        compilation_cache.disable()
        if session_dir:
            compilation_cache.enable(session_dir, session_min)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", session_min)
