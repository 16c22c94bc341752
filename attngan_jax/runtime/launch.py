r"""Runs a script as N JAX processes on this machine: multi-host training without a cluster.

    python -m attngan_jax.runtime.launch --num_processes=2 --devices_per_process=2 -- \
        train.py --config=configs/shapes.py:tiny --workdir=runs/mp

Each process gets the environment that ``attngan_jax.runtime.sharding.maybe_initialize_distributed`` reads
(``JAX_COORDINATOR_ADDRESS=127.0.0.1:<port>``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``) plus
``JAX_PLATFORMS=cpu`` and ``JAX_NUM_CPU_DEVICES`` (with ``--platform=cpu``, the default); the CPU
collectives between processes are gloo's. This is what a pod or a SLURM job does with one process
per host (docs/multihost.md), so the same ``train.py`` runs unchanged.

Process 0 writes to this terminal; process i > 0 writes to ``--log_dir/process_<i>.log`` (default:
the terminal too, each line prefixed ``[i]``). SIGTERM/SIGINT to the launcher is passed to every
process (they agree on a step, save a checkpoint and exit with 128 + the signal). When a process
dies, the others cannot finish their collectives: after ``--grace_s`` seconds they are killed.
The exit status is the first non-zero one of the processes (0 when all succeeded).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(
    index: int,
    count: int,
    port: int,
    devices_per_process: int = 1,
    platform: str = "cpu",
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of process ``index`` of ``count`` (coordinator on 127.0.0.1:``port``)."""
    env = dict(os.environ if base is None else base)
    env.update(
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        JAX_NUM_PROCESSES=str(count),
        JAX_PROCESS_ID=str(index),
        ATTNGAN_KEEP_MALLOC=env.get("ATTNGAN_KEEP_MALLOC", "1"),  # no re-exec of N children
    )
    if platform == "cpu":
        env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices_per_process))
    return env


def _pump(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, b""):
        out.write(prefix + line.decode(errors="replace"))
        out.flush()
    stream.close()


class Job:
    """N processes of one command; see the module docstring.

    Args:
        command: the program and its arguments after ``python`` (e.g. ``["train.py", ...]``).
        num_processes: how many processes.
        devices_per_process: CPU devices of each process.
        platform: ``cpu`` sets ``JAX_PLATFORMS`` and the device count; anything else leaves the
            platform to JAX (one process per accelerator host).
        log_dir: where processes > 0 write; None: this terminal with a ``[i]`` prefix.
        port: the coordinator's port (0: a free one).
        env: extra environment variables for every process.
        log_primary: process 0 writes to ``log_dir`` too (tests read every process's output).
        cwd: the processes' working directory.
    """

    def __init__(
        self,
        command: Sequence[str],
        num_processes: int,
        devices_per_process: int = 1,
        platform: str = "cpu",
        log_dir: str | None = None,
        port: int = 0,
        env: dict[str, str] | None = None,
        log_primary: bool = False,
        cwd: str | None = None,
    ):
        if num_processes < 1:
            raise ValueError(f"--num_processes must be at least 1, got {num_processes}")
        self.port = port or free_port()
        self.procs: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []
        self._files = []
        for i in range(num_processes):
            e = process_env(i, num_processes, self.port, devices_per_process, platform)
            e.update(env or {})
            kw: dict = {}
            if log_dir and (i > 0 or log_primary):
                os.makedirs(log_dir, exist_ok=True)
                f = open(os.path.join(log_dir, f"process_{i}.log"), "ab")  # noqa: SIM115
                self._files.append(f)
                kw = dict(stdout=f, stderr=subprocess.STDOUT)
            elif i > 0:
                kw = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            # its own session: a Ctrl-C reaches the launcher only, which passes it on once
            p = subprocess.Popen(
                [sys.executable, *command], env=e, start_new_session=True, cwd=cwd, **kw
            )
            self.procs.append(p)
            if p.stdout is not None:
                t = threading.Thread(target=_pump, args=(p.stdout, f"[{i}] ", sys.stderr))
                t.daemon = True
                t.start()
                self._threads.append(t)

    def signal_all(self, signum: int) -> None:
        """Sends ``signum`` to every process still running."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signum)

    def wait(self, grace_s: float = 60.0, timeout_s: float | None = None) -> int:
        """Waits for every process; kills the rest ``grace_s`` after one failed.

        Args:
            grace_s: how long the others may run on after a process failed.
            timeout_s: kill everything and raise ``TimeoutError`` after this long.

        Returns:
            The first non-zero exit status (a process killed by signal s counts as 128 + s).
        """
        failed_at = None
        t0 = time.time()
        while any(p.poll() is None for p in self.procs):
            if timeout_s is not None and time.time() - t0 > timeout_s:
                self.signal_all(signal.SIGKILL)
                for p in self.procs:
                    p.wait()
                raise TimeoutError(f"the job's processes still ran after {timeout_s} s")
            codes = [p.poll() for p in self.procs]
            if failed_at is None and any(c not in (None, 0) for c in codes):
                failed_at = time.time()
            if failed_at is not None and time.time() - failed_at > grace_s:
                self.signal_all(signal.SIGKILL)
            time.sleep(0.1)
        for t in self._threads:
            t.join(timeout=5)
        for f in self._files:
            f.close()
        for code in self.returncodes():
            if code:
                return code
        return 0

    def returncodes(self) -> list[int | None]:
        """Each process's exit status (128 + s for a signal s; None while running)."""
        codes = [p.poll() for p in self.procs]
        return [None if c is None else (128 - c if c < 0 else c) for c in codes]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m attngan_jax.runtime.launch [options] -- script.py [args]``."""
    parser = argparse.ArgumentParser(
        prog="python -m attngan_jax.runtime.launch",
        description="Run a script as N JAX processes on this machine (CPU, gloo collectives).",
    )
    parser.add_argument("--num_processes", type=int, default=2)
    parser.add_argument("--devices_per_process", type=int, default=1)
    parser.add_argument("--platform", default="cpu", help="cpu, or '' to let JAX choose")
    parser.add_argument("--log_dir", default=None, help="logs of processes > 0 (default: here)")
    parser.add_argument("--port", type=int, default=0, help="coordinator port (0: a free one)")
    parser.add_argument("--grace_s", type=float, default=60.0)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- script.py [args]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the script to run after --, e.g. -- train.py --config=...")
    job = Job(
        command,
        args.num_processes,
        args.devices_per_process,
        args.platform,
        args.log_dir,
        args.port,
    )
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda signum, frame: job.signal_all(signum))
    return job.wait(args.grace_s)


if __name__ == "__main__":
    sys.exit(main())
