"""XLA:CPU flag that decides convolution speed on CPU (see the README's performance section).

jaxlib's default XLA:CPU build routes every convolution to YNNPACK, which is 1.3-1.8x slower than
XLA's own convolution kernels on the CPUs we measured. This module appends
``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` to ``XLA_FLAGS`` before JAX
initialises its backend. It only affects the CPU backend. Set ``ATTNGAN_KEEP_XLA_FLAGS=1`` to leave
``XLA_FLAGS`` untouched.
"""

import os

CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def apply() -> None:
    """Adds the CPU convolution flag to ``XLA_FLAGS`` unless already set or disabled."""
    if os.environ.get("ATTNGAN_KEEP_XLA_FLAGS"):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + CPU_CONV_FLAG).strip()
