"""`rlhfsim sweep --backend ray`: each run is a Ray task with the experiment's `resources:`, on a cluster or a local Ray.

The planning (skip finished, resume killed, never overwrite) and the progress loop are the local backend's
(runner.execute); only starting and polling a run differ. The run executes inside the Ray worker process, so a
worker that dies is a run that dies: Ray retries the task (`--retries`), and the retry resumes the run from its
last checkpoint in the run directory. Run directories (and policy.cache_dir) must be on a path every node sees.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from rlhfsim import faults, run_cli
from rlhfsim.schema import ConfigError
from rlhfsim.sweep.runner import run_command


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--backend ray needs Ray: pip install -e '.[ray]' (or use the default --backend local)"
        ) from None
    return ray


def run_in_worker(run_dir: str, threads: int) -> int:
    """One run in this (Ray worker) process; resumes when the directory holds results (a retry after a crash)."""
    import torch

    from rlhfsim.tracking import RunDir  # torch: only in the Ray worker, not in the sweep process

    d = Path(run_dir)
    resume = RunDir(d).has_results()
    if resume:
        os.environ.pop(faults.ENV, None)  # test-only kill switch: a retried task runs to the end
    os.environ["COLUMNS"] = "160"
    torch.set_num_threads(threads)
    args = run_command(d, "resume" if resume else "start")[3:]  # without `python -m rlhfsim`
    console = run_cli.console
    out, err, cfile = sys.stdout, sys.stderr, console.file
    with open(d / "run.log", "a" if resume else "w") as log:
        log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} rlhfsim {' '.join(args)} (Ray task, pid {os.getpid()})\n")
        log.flush()
        sys.stdout = sys.stderr = console.file = log
        try:
            return int(run_cli.run_main(args))
        finally:
            sys.stdout, sys.stderr, console.file = out, err, cfile


def check_fits(resources, cluster: dict) -> None:
    """A run asking for more than the whole cluster has (Ray's cluster_resources(): CPU, GPU, memory in bytes) would
    wait forever: a ConfigError naming the field instead."""
    for key, field, scale, unit in (
        ("CPU", "cpus", 1, ""),
        ("GPU", "gpus", 1, ""),
        ("memory", "memory_gb", 2**30, " GiB"),
    ):
        want, have = (getattr(resources, field) or 0) * scale, cluster.get(key, 0)
        if want > have:
            raise ConfigError(
                f"resources.{field}: each run asks for {want / scale:g}{unit} {key} but the Ray cluster has "
                f"{have / scale:g}{unit} in all; lower resources.{field} in the experiment file or add nodes "
                "(a local Ray gets --ray-cpus CPUs)"
            )


class RayProc:
    """A submitted run with the part of subprocess.Popen's interface that runner.execute uses."""

    def __init__(self, ref):
        self.ref, self.returncode = ref, None

    def poll(self):
        if self.returncode is None:
            ray = _ray()
            ready, _ = ray.wait([self.ref], timeout=0)
            if ready:
                try:
                    self.returncode = int(ray.get(self.ref))
                except ray.exceptions.RayError:  # retries used up, or cancelled: run.log says where it stopped
                    self.returncode = 1
        return self.returncode

    def terminate(self):
        _ray().cancel(self.ref, force=True)

    kill = terminate

    def wait(self, timeout=None):
        t0 = time.monotonic()
        while self.poll() is None:
            if timeout is not None and time.monotonic() - t0 > timeout:
                import subprocess

                raise subprocess.TimeoutExpired("ray task", timeout)
            time.sleep(0.1)
        return self.returncode


class RayBackend:
    """Connects to `address` (or starts a local Ray with `local_cpus` CPUs) and starts runs as tasks."""

    def __init__(self, resources, address: str | None = None, local_cpus: int | None = None, retries: int = 3):
        ray = _ray()
        self.started_local = address is None
        try:
            if address is None:
                ray.init(
                    address="local",
                    num_cpus=local_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            why = str(e).splitlines()[0][:200]
            if address is None:
                raise ConfigError(
                    f"--backend ray: a local Ray did not start ({why}); join a running cluster with --address "
                    "(ray start --head prints it) or use --backend local"
                ) from None
            raise ConfigError(
                f"--address {address}: cannot connect to a Ray cluster there ({why}); "
                "give the head node's address (ray start --head prints it) or drop --address"
            ) from None
        self.resources = resources
        self.threads = max(1, int(resources.cpus))
        try:
            check_fits(resources, ray.cluster_resources())
        except ConfigError:
            self.close()
            raise
        opts = {"num_cpus": resources.cpus, "num_gpus": resources.gpus, "max_retries": retries, "max_calls": 1}
        if resources.memory_gb:
            opts["memory"] = int(resources.memory_gb * 2**30)
        env = {
            "PYTHONPATH": os.pathsep.join(
                p for p in [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")] if p
            )
        }
        self.task = ray.remote(**opts)(run_in_worker).options(runtime_env={"env_vars": env})

    def start(self, job) -> RayProc:
        return RayProc(self.task.remote(str(job.spec.path.resolve()), self.threads))

    def close(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            ray.shutdown()
