"""A local sweep's runs as forks of the warm sweep process, not fresh interpreters.

Every `rlhfsim run` process spends its first seconds importing (torch, transformers, scipy, pandas, matplotlib for the
run figure): 2-3 s of CPU a run on this project's 2-core machine, 20% of a 6-round propagation run (issue 34). The
sweep imports them once (`preload`: every module a run of the built-in models imports, transformers' GPT-2 included,
which the runs themselves imported until issue 34's second pass: 2-3 s of CPU each) and forks a child per run
(`fork_run`), which runs the same `rlhfsim run` command
line in the same environment, writing run.log as the subprocess did. Nothing a run computes differs: each run seeds
its own generators from its config, the thread count is set from the child's environment (RLHFSIM_THREADS, as the
subprocess's OMP_NUM_THREADS), and the parent never runs a torch op before forking (so no thread pool is copied).

Used only where fork is safe: POSIX, CPU-only sweeps (a CUDA context does not survive a fork), the local backend;
`rlhfsim sweep --no-fork` (or RLHFSIM_SWEEP_FORK=0) goes back to one subprocess a run.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from rich.console import Console

from rlhfsim import run_cli
from rlhfsim.plotting import pyplot

# rlhfsim.models.policy brings transformers' GPT-2 (~1,000 modules, 1.5-5 s of CPU): every run builds its models there
PRELOAD = (
    "rlhfsim.loop",
    "rlhfsim.run_cli",
    "rlhfsim.diagnostics.summary",
    "rlhfsim.run_figure",
    "pandas",
    "pyarrow.parquet",
    "rlhfsim.models.policy",
    "rlhfsim.reward.trainer",
    "rlhfsim.ppo.trainer",
    "rlhfsim.optim.group",
    "rlhfsim.world.graded",
    "rlhfsim.theory_graph",
    "seaborn",
)


def pristine() -> bool:
    """Whether a fork is safe here: torch not imported yet, so no OpenMP pool can exist. GNU OpenMP (torch's on
    Linux) is not fork-safe once a parallel region has run: the child's first parallel region waits for threads that
    were not copied (seen: a sweep forked from a test session that had run 2-thread GEMMs hung). The sweep command asks
    before it imports torch and runs no torch op before forking; a process that already imported torch (a test session,
    a notebook) spawns fresh processes instead. numpy's OpenBLAS and pyarrow's jemalloc threads are fork-safe (they
    re-initialise in the child)."""
    return "torch" not in sys.modules


def available(gpus: list[str], safe: bool) -> bool:
    """Fork where it is safe (`safe`: the process ran no torch op, see pristine) and not switched off
    (RLHFSIM_SWEEP_FORK=0): POSIX, no GPU."""
    return hasattr(os, "fork") and not gpus and safe and os.environ.get("RLHFSIM_SWEEP_FORK", "1") != "0"


def preload() -> None:
    """Import what every run imports (and matplotlib's Agg backend, for the run figure) in the sweep process."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # optional pieces (pyarrow) are the run's business, as before
            pass
    pyplot()


class ForkedRun:
    """Popen's poll / wait / terminate / kill / returncode for a forked child (negative returncode: killed by signal)."""

    def __init__(self, pid: int, args: list[str]):
        self.pid, self.args, self.returncode = pid, args, None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fork_run(
    args: list[str], log_fd: int, env: dict[str, str], main: Callable[[list[str]], int] | None = None
) -> ForkedRun:
    """Fork; the child runs `rlhfsim ARGS` (args without `python -m rlhfsim`) with stdout and stderr on log_fd and
    `env` as its environment, and exits with the command's code. `main` runs the arguments: `rlhfsim run`'s
    (run_cli.run_main, what the sweep forks) unless another entry point is given."""
    for stream in (sys.stdout, sys.stderr):  # nothing of the parent's buffered output is written twice
        stream.flush()
    pid = os.fork()
    if pid:
        return ForkedRun(pid, args)
    rc = 1
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.environ.clear()
        os.environ.update(env)
        # fresh stream objects: a lock the parent's progress thread held at fork time stays held in the child's copies
        sys.stdout = sys.stderr = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        import logging

        for h in list(logging.root.handlers):  # the sweep's handler writes to the parent's stderr object
            logging.root.removeHandler(h)
        import torch  # only in the child: the sweep process stays pristine (no torch; see pristine)

        torch.set_num_threads(int(env.get("RLHFSIM_THREADS") or env.get("OMP_NUM_THREADS") or torch.get_num_threads()))
        run_cli.console = Console(file=sys.stdout)  # the run's own console, sized by the child's COLUMNS
        rc = int((main or run_cli.run_main)(args))
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported in run.log, as a subprocess's traceback would be
        import traceback

        traceback.print_exc()
        rc = 1
    finally:
        try:
            sys.stdout.flush()
        finally:
            os._exit(rc)
