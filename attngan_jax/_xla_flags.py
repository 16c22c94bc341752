"""XLA:CPU flag that decides convolution speed on CPU (see the README's performance section).

jaxlib's default XLA:CPU build routes every convolution to YNNPACK, which is 1.3-1.8x slower than
XLA's own convolution kernels on the CPUs we measured. This module appends
``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` to ``XLA_FLAGS`` before JAX
initialises its backend. It only affects the CPU backend. Set ``ATTNGAN_KEEP_XLA_FLAGS=1`` to leave
``XLA_FLAGS`` untouched.
"""

import os

CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def _jaxlib_knows_flag() -> bool:
    """The flag exists from jaxlib 0.10 on; XLA aborts on flags it does not know."""
    try:
        from importlib.metadata import version

        major, minor = (int(p) for p in version("jaxlib").split(".")[:2])
    except Exception:  # not installed / odd version string: leave XLA_FLAGS alone
        return False
    return (major, minor) >= (0, 10)


def _accelerator_present() -> bool:
    """A GPU/TPU machine: the flag is pointless there (it only touches XLA:CPU)."""
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/accel0", "/dev/kfd"))


def apply() -> None:
    """Adds the CPU convolution flag to ``XLA_FLAGS`` unless already set or disabled."""
    if os.environ.get("ATTNGAN_KEEP_XLA_FLAGS") or _accelerator_present():
        return
    if not _jaxlib_knows_flag():
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + CPU_CONV_FLAG).strip()
