"""XLA:CPU flags that decide convolution speed and step memory on CPU (docs/performance.md).

- ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``: jaxlib's default XLA:CPU
  build routes every convolution to YNNPACK, which was slower than XLA's own convolution kernels
  on the CPUs we measured.
- ``--xla_cpu_enable_concurrency_optimized_scheduler=false``: XLA:CPU's default scheduler orders
  independent ops so that they can run concurrently, which keeps more intermediates alive at once.
  The memory-minimising order cuts the training steps' scratch memory (XLA's ``temp_size``)
  with no measurable change in step time (figures in docs/performance.md).

This module appends each flag to ``XLA_FLAGS`` before JAX initialises its backend, unless that flag
is already set there. It only affects the CPU backend. Set ``ATTNGAN_KEEP_XLA_FLAGS=1`` to leave
``XLA_FLAGS`` untouched.
"""

import os

CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
CPU_FLAGS = (CPU_CONV_FLAG, CPU_SCHEDULER_FLAG)


def _jaxlib_knows_flags() -> bool:
    """The flags exist from jaxlib 0.10 on; XLA aborts on flags it does not know."""
    try:
        from importlib.metadata import version

        major, minor = (int(p) for p in version("jaxlib").split(".")[:2])
    except Exception:  # not installed / odd version string: leave XLA_FLAGS alone
        return False
    return (major, minor) >= (0, 10)


def _accelerator_present() -> bool:
    """A GPU/TPU machine: the flags are pointless there (they only touch XLA:CPU)."""
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/accel0", "/dev/kfd"))


def add_missing(flags: str, extra) -> str:
    """``flags`` with each ``--name=value`` of ``extra`` appended unless ``flags`` names it."""
    for flag in extra:
        if flag.split("=")[0].lstrip("-") not in flags:
            flags = (flags + " " + flag).strip()
    return flags


def apply() -> None:
    """Adds the CPU flags to ``XLA_FLAGS`` unless already set there or disabled."""
    if os.environ.get("ATTNGAN_KEEP_XLA_FLAGS") or _accelerator_present():
        return
    if not _jaxlib_knows_flags():
        return
    os.environ["XLA_FLAGS"] = add_missing(os.environ.get("XLA_FLAGS", ""), CPU_FLAGS)
