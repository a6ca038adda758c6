"""Thread pools of the workers: torch and BLAS sized to each worker's share of the cores."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import dask
from distributed import Nanny, WorkerPlugin

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "ALLOCATOR_ENV",
    "OPENMP_ENV",
    "PLUGIN_NAME",
    "PROFILE_INTERVAL",
    "THREAD_ENV_VARS",
    "ThreadEnvNanny",
    "ThreadLimits",
    "cores",
    "thread_report",
    "worker_env",
]

#: Environment variables that size the thread pools of OpenMP, BLAS, numba and friends.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
)

PLUGIN_NAME = "cdip-thread-limits"

#: glibc's allocator in the workers: freed blocks below 32 MiB stay with the process for the next
#: temporary instead of going back to the kernel. Distributed's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536``
#: (it keeps the resident set low), which fixes the mmap threshold at 128 KiB too, so that every
#: temporary of torch is mapped, page-faulted in and unmapped again: an FFT pair of 2 x 2 x 64^3 on
#: one thread took 8.5 ms with 4,098 page faults against 4.8 ms with these (see
#: :mod:`cdiplatform.phasing.transforms`). Up to 256 MiB of free memory may stay mapped per worker.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}

#: OpenMP in the workers: after each parallel region GNU OpenMP's threads spin (300,000 turns by default,
#: 4 ms of a core here) before they sleep. The numba kernels of an iteration are each followed by a
#: transform on other threads (pocketfft's for grids above 32 MiB), which then shares the cores with the
#: spinning ones: at 256 x 256 x 210 an HIO iteration took 132-137 ms spinning and 121-124 ms with
#: 10,000 turns, HIO + shrink-wrap 152-155 against 135-140 ms; at 64^3 x 16 (torch's transforms) the
#: same either way, where spinning not at all (``OMP_WAIT_POLICY=passive``) slowed torch's FFT pair
#: by 10 %. Read when OpenMP loads, so set before the worker starts; a value the user set is kept.
OPENMP_ENV = {"GOMP_SPINCOUNT": "10000"}


def worker_env() -> dict[str, str]:
    """The variables a worker process starts with besides its thread counts: :data:`ALLOCATOR_ENV` and
    :data:`OPENMP_ENV`, the latter's values where this process's environment sets them kept."""
    return {**ALLOCATOR_ENV, **{var: os.environ.get(var, value) for var, value in OPENMP_ENV.items()}}


#: How often a worker samples its threads' stacks for the dashboard's profile. Distributed's default,
#: 10 ms, took 4-6 % of the compute of ER/HIO tasks when every core computes (3.80 against 3.52 s a
#: scan on 2 workers of 1 thread, 3.39 s on 1; the sampler thread competes for the GIL and the core);
#: at 100 ms a night's run still gathers hundreds of thousands of samples. A value that the user's Dask
#: configuration sets (anything but the default) is kept.
PROFILE_INTERVAL = "100ms"
_PROFILE_KEY = "distributed.worker.profile.interval"


def profile_interval() -> str:
    """The workers' profile sampling interval: the user's Dask setting, or :data:`PROFILE_INTERVAL`."""
    value = dask.config.get(_PROFILE_KEY)
    default = dask.config.get(_PROFILE_KEY, config=dask.config.merge(*dask.config.defaults))
    return PROFILE_INTERVAL if value == default else str(value)


def profile_env() -> dict[str, str]:
    """:func:`profile_interval` as the environment variable that a worker started from a shell reads."""
    return {"DASK_" + _PROFILE_KEY.upper().replace(".", "__"): profile_interval()}


class ThreadLimits(WorkerPlugin):
    """Worker plugin: size torch's and BLAS's thread pools to the worker's share of cores.

    On setup it sets the ``*_NUM_THREADS`` environment variables (read by
    libraries imported later, torch among them), calls
    ``torch.set_num_threads`` if torch is already imported, and limits the
    BLAS libraries already loaded through ``threadpoolctl`` when that is
    installed.

    Parameters
    ----------
    threads : int, optional
        Threads per worker; default: the worker's ``nthreads``.
    """

    name = PLUGIN_NAME
    idempotent = False

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self.applied: int | None = None
        self.blas: str = "env"

    def setup(self, worker: Any) -> None:
        # Dask measures the size of its sampled call-tree profiles recursively; those of deep stacks
        # (xrayutilities, torch) exceed Python's default limit and log "Sizeof calculation ... failed"
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
        n = int(self.threads or worker.state.nthreads or 1)
        os.environ.update({var: str(n) for var in THREAD_ENV_VARS})
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            self.blas = "env"
        else:
            threadpool_limits(limits=n)
            self.blas = "threadpoolctl"
        self.applied = n


def thread_report(client: Client) -> dict[str, dict[str, Any]]:
    """The thread settings of every worker, for benchmarks and logs to print.

    Returns
    -------
    dict
        Worker address to ``{"nthreads": task threads, "threads": the share
        set by ThreadLimits (None if the plugin is absent), "torch":
        torch.get_num_threads() in a task thread, "blas": how BLAS was
        limited, "omp": OMP_NUM_THREADS, "allocator": the worker's values of
        the variables of ALLOCATOR_ENV (None where unset), "openmp": the same
        for OPENMP_ENV, "profile_interval":
        its Dask profile sampling interval}``.
    """

    def _probe(dask_worker: Any) -> dict[str, Any]:
        plugin = dask_worker.plugins.get(PLUGIN_NAME)
        import torch

        return {
            "nthreads": dask_worker.state.nthreads,
            "threads": getattr(plugin, "applied", None),
            "torch": dask_worker.executor.submit(torch.get_num_threads).result(),
            "blas": getattr(plugin, "blas", None),
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "allocator": {var: os.environ.get(var) for var in ALLOCATOR_ENV},
            "openmp": {var: os.environ.get(var) for var in OPENMP_ENV},
            "profile_interval": str(dask.config.get(_PROFILE_KEY)),
        }

    return client.run(_probe)


class ThreadEnvNanny(Nanny):
    """A Nanny that spawns its worker with the thread variables set to ``core_share``,
    glibc's allocator and OpenMP's spinning set by :func:`worker_env` and the
    profile sampled at :func:`profile_interval`.

    Distributed's ``pre-spawn-environ`` pins OpenMP and BLAS to one thread and
    lets the parent's environment win; this sets them to the worker's share so
    that BLAS, loaded at import in the new process, starts with the right size.
    """

    def __init__(self, *args: Any, core_share: int = 1, **kwargs: Any) -> None:
        # the nanny hands its Dask configuration to the worker it spawns (a shallow merge over this
        # process's: so the whole of it, deep-merged here)
        profile = {"distributed": {"worker": {"profile": {"interval": profile_interval()}}}}
        config = dask.config.merge(dask.config.config, profile, kwargs.pop("config", None) or {})
        super().__init__(*args, config=config, **kwargs)
        env = {**{var: str(core_share) for var in THREAD_ENV_VARS}, **worker_env()}
        self.pre_spawn_env.update(env)  # glibc and OpenMP read their variables when the process starts
        self.env.update(env)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
