"""Device mesh helpers: one ``data`` axis over every device of every host.

Training is data parallel: the global batch is split along its first axis over the ``data`` mesh
axis and every parameter is replicated. Under ``jax.jit`` XLA (GSPMD) inserts the all-reduces, so
the mean gradients and the BatchNorm statistics are those of the *global* batch, exactly as a
single device running the whole batch would compute them.

Multi-host (docs/multihost.md): every host runs the same ``train.py``;
:func:`maybe_initialize_distributed` starts ``jax.distributed`` when the environment names a
cluster (``JAX_COORDINATOR_ADDRESS`` + ``JAX_NUM_PROCESSES`` + ``JAX_PROCESS_ID``, as
``python -m attngan_jax.runtime.launch`` sets them; a SLURM job of more than one task; a multi-worker TPU
slice; Open MPI). Each process then feeds its block of every global batch
(``attngan_jax.data.pipeline``) and ``jax.make_array_from_process_local_data`` assembles the global
arrays. :func:`fetch` copies results to the host, :func:`barrier` waits for every process, and
:func:`is_primary` names the one process that writes files shared by all (exports, summaries).
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import weakref
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from attngan_jax.errors import InputError

DATA_AXIS = "data"
log = logging.getLogger(__name__)
_barrier_ids = itertools.count()


def _cluster_detected(env) -> bool:
    """Whether ``env`` describes a job of more than one process."""
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return True
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return True
    hosts = env.get("TPU_WORKER_HOSTNAMES", "")
    return "," in hosts or bool(env.get("MEGASCALE_COORDINATOR_ADDRESS"))


def maybe_initialize_distributed(force: bool = False) -> bool:
    """Initialises ``jax.distributed`` on multi-process jobs; call it before anything uses JAX.

    ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` give the job explicitly (what ``attngan_jax.runtime.launch`` sets); otherwise JAX's
    own cluster detection reads SLURM, Open MPI or TPU metadata. A single-task SLURM job or a
    single TPU host initialises nothing. On CPU the cross-process collectives are gloo's.

    Args:
        force: initialise even when no cluster environment is detected.

    Returns:
        Whether this process is part of a multi-process job.
    """
    env = os.environ
    if not (force or _cluster_detected(env)):
        return False
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # only affects CPU
    kwargs: dict[str, Any] = {}
    if env.get("JAX_NUM_PROCESSES") and env.get("JAX_PROCESS_ID"):
        kwargs = dict(
            coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(env["JAX_NUM_PROCESSES"]),
            process_id=int(env["JAX_PROCESS_ID"]),
        )
    jax.distributed.initialize(**kwargs)
    log.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
    return jax.process_count() > 1


def is_primary() -> bool:
    """Process 0: the one that writes what all processes share (exports, summaries, samples)."""
    return jax.process_index() == 0


def barrier(name: str, timeout_s: int = 3600) -> None:
    """Blocks until every process reaches the barrier ``name`` (a no-op with one process).

    Uses the coordination service of ``jax.distributed`` (no device collective), so one process
    may work for a long time (preparing a dataset) while the others wait.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed  # the client jax.distributed.initialize started

    barrier_id = f"attngan_{name}_{next(_barrier_ids)}"
    distributed.global_state.client.wait_at_barrier(barrier_id, timeout_s * 1000)


_lockstep_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _signature(args) -> tuple:
    """What a compiled executable is specialised to: tree structure, shapes, dtypes, shardings."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return treedef, tuple(
        (np.shape(x), getattr(x, "dtype", type(x)), getattr(x, "sharding", None)) for x in leaves
    )


def call_in_lockstep(jitted: Callable, *args) -> Any:
    """Calls a jitted function that runs collectives across processes, compiled first.

    Gloo (JAX's CPU collectives) waits only 30 s for the other processes at a program's first
    collective; when one process compiles the program much later than another (a loaded machine),
    the collective fails. So with several processes the program is compiled once per argument
    signature (kept while ``jitted`` lives), every process waits at a :func:`barrier` after that
    compile, then it runs. One process: a plain call.

    Returns:
        ``jitted(*args)``.
    """
    if jax.process_count() == 1:
        return jitted(*args)
    by_signature = _lockstep_compiled.setdefault(jitted, {})
    sig = _signature(args)
    if sig not in by_signature:
        by_signature[sig] = jitted.lower(*args).compile()
        barrier("compiled")
    return by_signature[sig](*args)


def fetch(tree: Any) -> Any:
    """Host numpy copies of a tree of (replicated or fully addressable) arrays.

    ``jax.device_get`` refuses arrays that span other processes; a replicated array (parameters,
    metrics) has its whole value on every process, so its first local shard is the value.
    """

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                raise ValueError(
                    f"fetch: an array of shape {x.shape} is split over processes "
                    f"({x.sharding}); gather it first (jax.experimental.multihost_utils)"
                )
            return np.asarray(x.addressable_data(0))
        return np.asarray(jax.device_get(x))

    return jax.tree_util.tree_map(one, tree)


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh with axis ``data`` over ``devices`` (default: every device of every host)."""
    devs = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devs.reshape(-1), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of parameters and optimizer states (a full copy on every device)."""
    return NamedSharding(mesh, P())


def put_leafwise(make_tree: Callable[[], Any], sharding: jax.sharding.Sharding | None = None):
    """Builds a tree of host arrays and moves it to devices one leaf at a time.

    Each host array is released as soon as its device copy exists, so the host holds the tree
    once plus one leaf, not twice: passing the numpy tree to a jitted initialiser instead keeps
    every host array alive until the call returns (e.g. the DAMSM run's pretrained trunk, read
    from a file; the peak RSS it saves is in docs/performance.md). The tree
    must not be referenced elsewhere, which is why it is built here from ``make_tree``. (On CPU,
    JAX may adopt a suitably aligned host array of the right dtype as the device buffer instead
    of copying it; that array then lives on as the device array.)

    Args:
        make_tree: ``() -> tree`` of numpy (or JAX) arrays, e.g. weights read from files.
        sharding: where the leaves go (``replicated(mesh)``); None: the default device.

    Returns:
        The same tree structure with ``jax.Array`` leaves.
    """
    leaves, treedef = jax.tree_util.tree_flatten(make_tree())  # the only reference to the tree
    for i, leaf in enumerate(leaves):
        leaves[i] = jax.device_put(leaf, sharding)  # drops the list's reference to the host copy
        del leaf
    return jax.tree_util.tree_unflatten(treedef, leaves)


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding of batch arrays: the first axis split over ``data``."""
    return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh, key: str = "batch_size") -> None:
    """Raises a clear error when the global batch does not split evenly over the devices.

    Args:
        global_batch: the global batch size.
        mesh: the device mesh.
        key: the config key that sets it (named in the message), e.g. ``gan.batch_size``.
    """
    n = mesh.devices.size
    if global_batch % n:
        lo = global_batch // n * n
        near = f"{lo} or {lo + n}" if lo else f"{n}"
        raise InputError(
            f"--config.{key}={global_batch} does not split over the {n} devices of "
            f"{jax.process_count()} process(es); use a multiple of {n} (nearest: {near})"
        )


def to_global(batch: dict, mesh: Mesh, axis: str = DATA_AXIS, keep_host: bool = False) -> dict:
    """Host-local numpy batch -> global ``jax.Array``s sharded along the batch axis over ``axis``.

    Every process calls this in lockstep with its own host block (blocks are laid out in process
    order). Host-only fields (strings such as ``keys``) never become device arrays: they are dropped
    (the jitted steps never see them) unless ``keep_host``, which passes them through unchanged.
    """
    sharding = NamedSharding(mesh, P(axis))
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        if v.dtype.kind not in "OUS":
            out[k] = jax.make_array_from_process_local_data(sharding, v)
        elif keep_host:
            out[k] = v
    return out


def process_allgather(tree: Any) -> list[Any]:
    """Every process's copy of a tree of host arrays, in process order (the same on all of them).

    The leaves may differ in shape between processes (e.g. the codes of each process's share of
    an evaluation) but not in tree structure, rank or dtype. Values travel as bytes, so float64
    and int64 arrive exactly even with JAX's 64-bit mode off. One process: ``[tree]``.

    Every process must call this in lockstep (it runs a cross-process all-gather on the mesh of
    every device, through :func:`call_in_lockstep`).

    Args:
        tree: a pytree of numpy arrays or Python/numpy scalars.

    Returns:
        A list of ``jax.process_count()`` trees of numpy arrays.
    """
    if jax.process_count() == 1:
        return [tree]
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves = [np.array(x, copy=None, order="C") for x in leaves]  # keeps 0-d leaves 0-d
    shapes = np.array(
        [d for x in leaves for d in x.shape] or [0], np.int32
    )  # same length everywhere
    buf = np.concatenate([x.reshape(-1).view(np.uint8) for x in leaves] or [np.zeros(0, np.uint8)])
    sizes = _stack_over_processes(np.array([buf.size], np.int32))[:, 0]  # (P,)
    all_shapes = _stack_over_processes(shapes)  # (P, sum of ranks)
    bufs = _stack_over_processes(np.pad(buf, (0, int(sizes.max()) - buf.size)))  # (P, max bytes)
    out = []
    for p in range(jax.process_count()):
        dims, offset, got = iter(all_shapes[p].tolist()), 0, []
        for x in leaves:
            shape = tuple(next(dims) for _ in range(x.ndim))
            nbytes = int(np.prod(shape, dtype=np.int64)) * x.dtype.itemsize
            got.append(bufs[p, offset : offset + nbytes].copy().view(x.dtype).reshape(shape))
            offset += nbytes
        out.append(jax.tree_util.tree_unflatten(treedef, got))
    return out


def _stack_over_processes(x: np.ndarray) -> np.ndarray:
    """(P, ...) : every process's ``x`` (same shape and dtype on all of them), in process order."""
    mesh = make_mesh()
    n_local = jax.local_device_count()
    rows = np.broadcast_to(x[None], (n_local, *x.shape)).copy()  # one row per local device
    g = jax.make_array_from_process_local_data(batch_sharded(mesh), rows)  # (P * n_local, ...)
    out = fetch(call_in_lockstep(_replicate(mesh), g))
    return out[::n_local]


@functools.lru_cache(maxsize=4)
def _replicate(mesh: Mesh) -> Callable:
    return jax.jit(lambda x: x, out_shardings=replicated(mesh))
