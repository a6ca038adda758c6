"""SLURM jobs in pools on one scheduler, each pool a job template with its own adaptive bounds.

A pool is what one SLURM cluster file describes (``jobs/slurm.yaml``: CPU jobs;
``jobs/slurm_gpu.yaml``: GPU jobs whose workers advertise ``GPU=1``). One
:class:`PooledSLURMCluster` runs one scheduler and the jobs of every pool;
:class:`PoolAdaptive` keeps each pool between its minimum and maximum number
of jobs, which also replaces jobs that ended: a worker that retired at its
``--lifetime``, a job cancelled or killed at its walltime.

Why not dask-jobqueue's own ``SLURMCluster.adapt`` alone:

- it has one job template, so CPU and GPU jobs cannot share a scheduler;
- a job of several worker processes (``processes > 1``) that ended is never
  resubmitted (dask-jobqueue #691): distributed forgets a lost job only when a
  worker of the job's own name leaves, and such a job's workers are named
  ``<job>-0``, ``<job>-1``... :meth:`PooledSLURMCluster._update_worker_status`
  forgets the job once all its workers are gone, and the adaptive loop
  submits a new one;
- a new job goes where work waits: to a pool whose workers advertise a
  resource (``GPU``) that queued tasks ask for and the workers present cannot
  all serve, otherwise to a pool without resources.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import dask
from dask.utils import parse_timedelta
from dask_jobqueue import SLURMCluster
from distributed.core import Status
from distributed.deploy.adaptive import Adaptive
from distributed.utils import NoOpAwaitable

__all__ = ["ADAPT_INTERVAL", "ADAPT_WAIT_COUNT", "Pool", "PoolAdaptive", "PooledSLURMCluster", "job_of_worker",
           "pool_label", "worker_resources"]

#: how often the adaptive loop looks at the scheduler
ADAPT_INTERVAL = "2s"
#: consecutive looks at an idle job before it is released (about a minute): a stage's driver work between
#: two stages does not give jobs back only to queue for new ones
ADAPT_WAIT_COUNT = 30


@dataclass(frozen=True)
class Pool:
    """SLURM jobs of one template, between ``minimum`` and ``maximum`` of them.

    Attributes
    ----------
    label : str
        Names the pool's jobs: ``<label>.<n>`` (workers of a job with several
        processes: ``<label>.<n>-<k>``); letters, digits and ``_`` only.
    job : dict
        Keywords of ``dask_jobqueue.slurm.SLURMJob`` (cores, memory, processes, walltime, ...).
    processes : int
        Dask workers per job.
    minimum, maximum : int
        Bounds on the pool's number of jobs.
    resources : dict of str to float
        Dask resources each worker advertises (``--resources`` of ``worker_extra_args``).
    """

    label: str
    job: dict[str, Any]
    processes: int
    minimum: int
    maximum: int
    resources: dict[str, float] = field(default_factory=dict)


def worker_resources(worker_extra_args: list[str] | None) -> dict[str, float]:
    """The Dask resources that ``dask worker`` arguments declare (``--resources "GPU=1 MEM=2e9"``)."""
    args = list(worker_extra_args or [])
    specs = []
    for i, arg in enumerate(args):
        if arg == "--resources" and i + 1 < len(args):
            specs.append(args[i + 1])
        elif arg.startswith("--resources="):
            specs.append(arg.split("=", 1)[1])
    out: dict[str, float] = {}
    for spec in specs:
        for item in spec.replace(",", " ").split():
            name, _, amount = item.partition("=")
            out[name] = float(amount)
    return out


def job_of_worker(worker: Any) -> str:
    """The job a worker belongs to (a worker state, or its name): its name less the ``-<k>`` group suffix."""
    name = getattr(worker, "name", worker)
    return str(name).split("-", 1)[0]


def pool_label(stem: str, taken: set[str]) -> str:
    """A pool label from a file's stem: letters, digits and ``_`` only, not in ``taken`` (then added to it)."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", stem) or "pool"
    label, n = base, 2
    while label in taken:
        label, n = f"{base}_{n}", n + 1
    taken.add(label)
    return label


class PooledSLURMCluster(SLURMCluster):
    """A ``SLURMCluster`` whose jobs come from several templates (pools), each kept within its bounds.

    Parameters
    ----------
    pools : list of Pool
        The first pool's job keywords are also passed to ``SLURMCluster``
        (with the cluster-level ones in ``kwargs``); each job is submitted
        with its own pool's keywords.
    **kwargs
        ``SLURMCluster`` keywords (scheduler options, interface, ...).
    """

    def __init__(self, pools: list[Pool], **kwargs: Any) -> None:
        if not pools:
            raise ValueError("a pooled SLURM cluster needs at least one pool")
        labels = [p.label for p in pools]
        if len(set(labels)) != len(labels) or not all(re.fullmatch(r"[A-Za-z0-9_]+", x) for x in labels):
            raise ValueError(f"pool labels must be distinct, of letters, digits and '_': {labels}")
        self._pools = list(pools)
        self._numbers = itertools.count()
        self._pool_of: dict[str, int] = {}
        super().__init__(**{**pools[0].job, **kwargs})
        inherited = {k: self._job_kwargs[k] for k in ("config_name", "interface", "protocol", "security")}
        self._specs = []
        for pool in self._pools:
            options = {**inherited, **{k: v for k, v in pool.job.items() if v is not None}}
            try:  # a job of this pool, never submitted: raises on a bad keyword, as SLURMCluster does
                self.job_cls("tcp://<scheduler>:8786", name="dummy-name", **options).job_script()
            except TypeError as exc:
                raise ValueError(f"pool {pool.label}: {exc}") from None
            spec: dict[str, Any] = {"cls": self.job_cls, "options": options}
            if pool.processes > 1:
                spec["group"] = [f"-{k}" for k in range(pool.processes)]
            self._specs.append(spec)

    @property
    def pools(self) -> list[Pool]:
        return list(self._pools)

    def jobs_per_pool(self) -> dict[str, int]:
        """Planned jobs of each pool (submitted, running, or about to be)."""
        counts = dict.fromkeys((p.label for p in self._pools), 0)
        for name in self.worker_spec:
            counts[self._pools[self._pool_of[name]].label] += 1
        return counts

    def job_script_of(self, label: str) -> str:
        """The batch script a job of pool ``label`` is submitted with (its name a placeholder)."""
        i = [p.label for p in self._pools].index(label)
        return self.job_cls(self.scheduler_address, name="dummy-name", **self._specs[i]["options"]).job_script()

    # -- growing and shrinking -----------------------------------------------------------

    def _counts(self) -> list[int]:
        counts = [0] * len(self._pools)
        for name in self.worker_spec:
            counts[self._pool_of[name]] += 1
        return counts

    def _waiting_resources(self) -> set[str]:
        """Resources that queued or waiting tasks ask for beyond what the workers present offer."""
        scheduler = getattr(self, "scheduler", None)
        if scheduler is None or not hasattr(scheduler, "unrunnable"):
            return set()
        need: dict[str, float] = defaultdict(float)
        supply: dict[str, float] = defaultdict(float)
        try:
            tasks = list(scheduler.unrunnable)
            for ws in list(scheduler.workers.values()):
                tasks.extend(ws.processing)
                for name, amount in (ws.resources or {}).items():
                    supply[name] += amount
            for ts in tasks:
                for name, amount in (ts.resource_restrictions or {}).items():
                    need[name] += amount
        except RuntimeError:  # changed while read from another thread: decide without it
            return set()
        return {name for name, amount in need.items() if amount > supply[name]}

    def _pool_to_grow(self, counts: list[int]) -> int | None:
        room = [i for i, p in enumerate(self._pools) if counts[i] < p.maximum]
        if not room:
            return None
        below = [i for i in room if counts[i] < self._pools[i].minimum]
        if below:
            return below[0]
        waiting = self._waiting_resources()
        for i in room:
            if waiting & set(self._pools[i].resources):
                return i
        plain = [i for i in room if not self._pools[i].resources]
        return plain[0] if plain else room[0]

    def _new_job(self, i: int) -> dict[str, Any]:
        name = f"{self._pools[i].label}.{next(self._numbers)}"
        self._pool_of[name] = i
        return {name: self._specs[i]}

    def new_worker_spec(self) -> dict[str, Any]:
        """The next job, of the pool :meth:`scale` would grow (empty when every pool is full)."""
        i = self._pool_to_grow(self._counts())
        return {} if i is None else self._new_job(i)

    def scale(self, n: int | None = None, jobs: int = 0, memory: Any = None, cores: Any = None) -> Any:
        """Scale to ``n`` workers (or ``jobs`` jobs), within every pool's bounds.

        New jobs go to pools below their minimum first, then where work waits
        (see the module's docstring); jobs not yet running go first when
        scaling down, and no pool goes below its minimum.
        """
        if memory is not None or cores is not None:
            raise ValueError("a pooled SLURM cluster scales by workers or jobs, not by memory or cores")
        by_jobs = n is None

        def planned() -> int:
            return len(self.worker_spec) if by_jobs else len(self.plan)

        target = jobs if by_jobs else int(n)
        closing = self.status in (Status.closing, Status.closed)  # close() scales to 0: every job goes
        while planned() < target and not closing:
            new = self.new_worker_spec()
            if not new:
                break
            self.worker_spec.update(new)
        if planned() > target:
            arrived = {job_of_worker(d["name"]) for d in self.scheduler_info.get("workers", {}).values()}
            for name in sorted(self.worker_spec, key=lambda x: (x in arrived, -int(x.rsplit(".", 1)[1]))):
                if planned() <= target:
                    break
                i = self._pool_of[name]
                if closing or self._counts()[i] > self._pools[i].minimum:
                    del self.worker_spec[name]
        self.loop.add_callback(self._correct_state)
        if self.asynchronous:
            return NoOpAwaitable()
        return None

    scale_up = scale

    def adapt(self, *args: Any, **kwargs: Any) -> Adaptive:
        """Adaptive scaling within the pools' bounds (``minimum``/``maximum`` are derived from them)."""
        kwargs.update(
            minimum=sum(p.minimum * p.processes for p in self._pools),
            maximum=sum(p.maximum * p.processes for p in self._pools),
            worker_key=job_of_worker,
        )
        kwargs.setdefault("interval", ADAPT_INTERVAL)
        kwargs.setdefault("wait_count", ADAPT_WAIT_COUNT)
        return super(SLURMCluster, self).adapt(*args, Adaptive=PoolAdaptive, **kwargs)

    def _update_worker_status(self, op: str, msg: Any) -> None:
        """Also forget a job of several workers once all are gone, so that it is replaced (jobqueue #691)."""
        if op == "remove" and msg in self.scheduler_info.get("workers", {}):
            job = job_of_worker(self.scheduler_info["workers"][msg]["name"])
            if job in self.worker_spec and "group" in self.worker_spec[job]:
                delay = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout"))

                def forget() -> None:
                    alive = any(job_of_worker(d["name"]) == job for d in self.scheduler_info["workers"].values())
                    if job in self.workers and not alive:
                        self._futures.add(asyncio.ensure_future(self.workers[job].close()))
                        del self.workers[job]

                asyncio.get_running_loop().call_later(delay, forget)
        super()._update_worker_status(op, msg)


class PoolAdaptive(Adaptive):
    """distributed's Adaptive that never releases a job below its pool's minimum."""

    async def workers_to_close(self, target: int) -> list[str]:
        names = await super().workers_to_close(target)
        cluster: PooledSLURMCluster = self.cluster  # type: ignore[assignment]
        counts = cluster._counts()
        jobs: dict[str, list[str]] = defaultdict(list)
        for name in names:
            jobs[job_of_worker(name)].append(name)
        out = []
        for job, workers in jobs.items():
            i = cluster._pool_of.get(job)
            if i is None:
                continue
            if counts[i] > cluster.pools[i].minimum:
                counts[i] -= 1
                out.extend(workers)
        return out
