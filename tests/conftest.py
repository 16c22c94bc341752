"""Test configuration: full-precision float32 math and the fixture directory."""

import os

import jax
import pytest

from attngan_jax.runtime import xla_flags

xla_flags.apply()  # as the entry points do: the CPU flags, inherited by subprocesses

# Tests check what the code computes, not how fast: LLVM at -O0 builds XLA:CPU's kernels ~30 %
# faster (the suite is mostly compiles of tiny models), and the values agree with -O2 within every
# tolerance here. ATTNGAN_TEST_FULL_OPT=1 runs the suite at XLA's default optimisation level.
# Set before JAX starts its backend; subprocesses started by tests inherit it through XLA_FLAGS.
if not os.environ.get("ATTNGAN_TEST_FULL_OPT"):
    os.environ["XLA_FLAGS"] = xla_flags.add_missing(
        os.environ.get("XLA_FLAGS", ""), ["--xla_backend_optimization_level=0"]
    )

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def parity_dir() -> str:
    from paths import require_shared

    from attngan_jax.parity import default_dir

    return require_shared(default_dir(), "the parity fixture directory")


@pytest.fixture(scope="session", autouse=True)
def _session_compilation_cache(tmp_path_factory):
    """A fresh persistent compilation cache for the session: tests that build the same step again
    (resume, preemption, repeated runs) read it instead of compiling again."""
    from attngan_jax.runtime import compilation_cache

    path = compilation_cache.enable(str(tmp_path_factory.mktemp("jax_cache")), 1.0)
    yield path
    compilation_cache.disable()
