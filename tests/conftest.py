"""Test configuration: full-precision float32 math and the fixture directory."""

import os

import jax
import pytest

import attngan_jax  # noqa: F401  (sets the XLA:CPU flag before JAX starts)

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def parity_dir() -> str:
    from attngan_jax.parity import default_dir

    d = default_dir()
    if not os.path.isdir(d):
        pytest.fail(f"parity fixture directory not found: {d} (set ATTNGAN_PARITY_DIR)")
    return d


@pytest.fixture(scope="session", autouse=True)
def _session_compilation_cache(tmp_path_factory):
    """A fresh persistent compilation cache for the session: tests that build the same step again
    (resume, preemption, repeated runs) read it instead of compiling again."""
    from attngan_jax import compilation_cache

    path = compilation_cache.enable(str(tmp_path_factory.mktemp("jax_cache")), 1.0)
    yield path
    compilation_cache.disable()
