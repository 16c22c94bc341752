#!/usr/bin/env bash
# Makes tmp/wheels: the wheels of the modules train.py needs that a preinstalled JAX + PyTorch image
# may lack, for gpu_side_by_side.sh to install offline (only those whose module is missing; see
# benchmarks/gpu_env.py). Run here, where the package index is reachable; hand the folder to the
# device tool as carry=["tmp/wheels"] (tmp/ is git-ignored; ~22 MB). Versions = this venv's.
#
#   bash benchmarks/gpu_wheels.sh [PYTHON]     # PYTHON with pip, default .venv/bin/python
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${1:-.venv/bin/python}"
D=tmp/wheels
mkdir -p "$D"
dl() { "$PY" -m pip download -q --no-deps -d "$D" "$@"; }
# pure Python
dl --only-binary=:all: ml-collections==1.1.0 clu==0.0.12 tensorboardX==2.6.5 \
  tensorflow-datasets==4.9.10 tensorflow-metadata==1.21.0 etils==1.15.0 immutabledict==4.3.1 \
  toml==0.10.2 portpicker==1.6.0 cloudpickle==3.1.3 googleapis-common-protos==1.76.0 six==1.17.0
# promise has no wheel: build one (pip then needs no build tools offline)
dl --no-binary=:all: promise==2.3
"$PY" -m pip wheel -q --no-deps --no-build-isolation "$D"/promise-2.3.tar.gz -w "$D"
rm -f "$D"/promise-2.3.tar.gz
# compiled: one wheel per CPython the image may have
for v in 3.11 3.12 3.13; do
  dl --only-binary=:all: --python-version "$v" --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_28_x86_64 grain==0.2.18 array_record==0.8.6 wrapt==2.5.2 PyYAML==6.0.4
done
ls -l "$D"
du -sh "$D"
