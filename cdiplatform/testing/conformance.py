"""What every chunk stage must do, checked against the real runner (like ``zarr.testing.StoreTests``).

A stage's tests subclass :class:`StageTests` with a small job: the stages
that make its inputs (``upstream``) and its own ``[[stage]]`` table
(``stage_table``, with ``{chunk}`` where its chunk size goes)::

    class TestPad(StageTests):
        upstream = '''
            [[stage]]
            stage = "simulate_2d"
            output = "collections/c"
            [stage.params]
            n_scans = 12
            size = 16
        '''
        stage_table = '''
            [[stage]]
            stage = "pad"
            inputs = { collection = "collections/c" }
            output = "collections/p"
            [stage.params]
            chunk = {chunk}
        '''
        output = "collections/p"
        spoil = ("collections/c", "amplitude")   # a NaN here must fail that scan alone

and inherits the checks, run on LocalClusters of real worker processes:

- the output does not depend on the chunk size or on the number of workers;
- a scan forced to fail (a NaN written into one scan of an input) fails
  alone, with its reason, and the others equal a clean run's;
- a run whose driver is killed after its first chunk, then resumed, gives
  data identical to an uninterrupted run's (the kill comes from the runner's
  test hook :data:`~cdiplatform.pipeline.runner.KILL_AFTER_CHUNKS`);
- a rerun of a complete run recomputes and rewrites nothing.

:func:`assert_runs_identical` compares two runs' nodes: data variables and
coordinates, bookkeeping times excluded.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr

__all__ = ["StageTests", "assert_runs_identical", "shared_client", "spoil_scan"]

#: variables that differ between identical runs: wall-clock times (the bookkeeping's and the time records)
TIMES = ("seconds", "history_seconds", "method_seconds", "seconds_to_target")

_CLUSTERS: dict[int, Any] = {}


def shared_client(workers: int = 2):
    """A client of a LocalCluster of ``workers`` processes (one thread each), shared by every test of the
    process and closed when it exits."""
    if workers not in _CLUSTERS:
        from cdiplatform.pipeline.cluster import connect

        handle = connect("local", workers=workers, threads_per_worker=1, dashboard=False)
        _CLUSTERS[workers] = handle
        atexit.register(_close, handle)
    return _CLUSTERS[workers].client


def _close(handle: Any) -> None:
    import logging

    # at exit the test runner's streams are closed: the cluster's farewell messages have nowhere to go
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    handle.close()


def _node(source: Any, node: str) -> xr.Dataset:
    from cdiplatform import open_catalog

    if isinstance(source, xr.Dataset):
        return source
    return open_catalog(source).open(node, chunks=None).load()


def assert_runs_identical(a: Any, b: Any, nodes: list[str] | str | None = None, *, atol: float = 0.0) -> None:
    """Assert that two runs wrote the same data: every data variable and coordinate, times excluded.

    Parameters
    ----------
    a, b : path or xarray.Dataset
        Two catalogs (then ``nodes`` names the nodes to compare) or two node datasets.
    nodes : str or list of str, optional
        Nodes to compare; default every node of ``a``.
    atol : float
        0 (default): bit-identical. Otherwise floating-point values may differ by this much (and the
        per-scan digests, hashes of the exact values, are not compared).
    """
    from cdiplatform import open_catalog

    if isinstance(a, xr.Dataset):
        pairs = [("", a, b)]
    else:
        names = [nodes] if isinstance(nodes, str) else nodes or open_catalog(a).nodes()
        pairs = [(n, _node(a, n), _node(b, n)) for n in names]
    for name, x, y in pairs:
        skip = TIMES + (("digest",) if atol else ())
        x = x.drop_vars([v for v in skip if v in x.variables]).drop_attrs()
        y = y.drop_vars([v for v in skip if v in y.variables]).drop_attrs()
        try:
            if atol:
                xr.testing.assert_allclose(x, y, atol=atol, rtol=0)
            else:
                xr.testing.assert_identical(x, y)
        except AssertionError as exc:
            raise AssertionError(f"runs differ in {name or 'the node'}:\n{exc}") from None


def spoil_scan(catalog: Path, node: str, position: int, variable: str) -> Any:
    """Write NaN into one scan of a node (a whole-node rewrite through the catalog), as a bad measurement
    would hold; returns the scan's identity."""
    from cdiplatform import open_catalog

    cat = open_catalog(catalog, mode="a")
    ds = cat.open(node, chunks=None).load()
    attrs = cat.attrs(node)
    values = ds[variable].values.astype(float if ds[variable].dtype.kind != "f" else ds[variable].dtype)
    values[position] = np.nan
    ds[variable] = (ds[variable].dims, values.astype(ds[variable].dtype), ds[variable].attrs)
    for var in ds.variables.values():
        var.encoding = {}
    cat.write(node, ds, attrs=attrs, overwrite=True)
    scan = ds["scan"].values[position]
    return scan.item() if isinstance(scan, np.generic) else scan


class StageTests:
    """Base class of a stage's conformance tests; see the module docstring."""

    #: TOML of the stages that make the inputs (may be empty)
    upstream: ClassVar[str] = ""
    #: TOML of the stage under test, with ``{chunk}`` for its chunk size
    stage_table: ClassVar[str]
    #: its output node
    output: ClassVar[str]
    #: two chunk sizes that split the scans differently
    chunks: ClassVar[tuple[int, int]] = (2, 5)
    #: ``(node, variable)`` of an input where a NaN in one scan must fail that scan alone; None when the
    #: stage has no such input (then ``why_no_spoil`` says why)
    spoil: ClassVar[tuple[str, str] | None] = None
    why_no_spoil: ClassVar[str] = ""
    #: position along ``scan`` of the spoiled input scan
    spoil_position: ClassVar[int] = 1
    #: job seed
    seed: ClassVar[int] = 7
    #: 0: runs must be bit-identical; else the largest difference allowed between runs whose scans were
    #: batched differently (say why where it is set)
    atol: ClassVar[float] = 0.0

    # -- helpers -------------------------------------------------------------------------
    def prepare_catalog(self, catalog: Path) -> None:
        """Write inputs that no stage makes (raw scans, say) into the catalog; nothing by default."""

    def force_failure(self, catalog: Path) -> tuple[Any, str]:
        """Spoil one input scan that the stage must refuse; return its identity and a word of the reason.

        By default a NaN in ``spoil``; override for inputs that cannot hold NaN (raw counts).
        """
        node, variable = self.spoil
        return spoil_scan(catalog, node, self.spoil_position, variable), "NaN"

    def job(self, folder: Path, *, chunk: int, name: str = "conformance") -> Path:
        text = f'[job]\nname = "{name}"\nseed = {self.seed}\n\n'
        text += textwrap.dedent(self.upstream) + "\n" + textwrap.dedent(self.stage_table).replace("{chunk}", str(chunk))
        path = folder / f"{name}-{chunk}.toml"
        path.write_text(text)
        return path

    def run(self, job: Path, catalog: Path, *, workers: int = 2, only_upstream: bool = False):
        from cdiplatform.pipeline.job import load_job
        from cdiplatform.pipeline.runner import run_job

        if not catalog.exists():
            from cdiplatform import open_catalog

            open_catalog(catalog, mode="a")
            self.prepare_catalog(catalog)
        loaded = load_job(job, root=job.parent)
        if only_upstream:
            from dataclasses import replace

            loaded = replace(loaded, stages=loaded.stages[:-1])
        return run_job(loaded, client=shared_client(workers), catalog=catalog)

    def _stage_report(self, reports):
        return reports[-1]

    # -- the properties ------------------------------------------------------------------
    def test_the_output_depends_neither_on_chunking_nor_on_workers(self, tmp_path):
        a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
        reports = self.run(self.job(tmp_path, chunk=self.chunks[0]), a, workers=2)
        assert self._stage_report(reports).ok > 0, self._stage_report(reports).failed
        self.run(self.job(tmp_path, chunk=self.chunks[1]), b, workers=1)
        assert_runs_identical(a, b, self.output, atol=self.atol)

    def test_a_scan_forced_to_fail_fails_alone_with_its_reason(self, tmp_path):
        import pytest

        if self.spoil is None and type(self).force_failure is StageTests.force_failure:
            pytest.skip(f"no input scan can be spoiled: {self.why_no_spoil}")
        clean, spoiled = tmp_path / "clean.zarr", tmp_path / "spoiled.zarr"
        job = self.job(tmp_path, chunk=self.chunks[0])
        self.run(job, clean)
        self.run(job, spoiled, only_upstream=True)
        scan, word = self.force_failure(spoiled)
        from cdiplatform import open_catalog

        clean_failed = set(open_catalog(clean).failed(self.output)["scan"].values.tolist())
        report = self._stage_report(self.run(job, spoiled))
        assert set(report.failed) - clean_failed == {scan}, report.failed
        assert word in report.failed[scan], report.failed[scan]

        got = open_catalog(spoiled).open(self.output, chunks=None).load()
        want = open_catalog(clean).open(self.output, chunks=None).load()
        keep = got["scan"].values != scan
        assert (got["status"].values[keep] == want["status"].values[keep]).all()
        assert_runs_identical(got.isel(scan=keep), want.isel(scan=keep), atol=self.atol)

    def test_a_killed_run_resumes_to_identical_data(self, tmp_path):
        from cdiplatform.pipeline.runner import KILL_AFTER_CHUNKS

        killed, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
        job = self.job(tmp_path, chunk=self.chunks[0])
        self.run(job, clean)
        self.run(job, killed, only_upstream=True)
        client = shared_client(2)
        env = {**os.environ, KILL_AFTER_CHUNKS: "1"}
        proc = subprocess.run([sys.executable, "-m", "cdiplatform.cli.main", "run", str(job), "--catalog",
                               str(killed), "--cluster", client.scheduler.address], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == -9, proc.stdout + proc.stderr
        report = self._stage_report(self.run(job, killed))
        assert report.state in ("resume", "complete"), report.state
        assert_runs_identical(killed, clean, self.output)

    def test_a_rerun_recomputes_and_rewrites_nothing(self, tmp_path):
        catalog = tmp_path / "c.zarr"
        job = self.job(tmp_path, chunk=self.chunks[0])
        failed = self._stage_report(self.run(job, catalog)).failed
        files = {p: p.stat().st_mtime_ns for p in (catalog / self.output).rglob("*") if p.is_file()}
        reports = self.run(job, catalog)
        if failed:  # scans that failed (upstream, here) are tried again, and only they
            assert self._stage_report(reports).computed == len(failed), self._stage_report(reports)
            return
        assert all(r.state == "complete" and r.computed == 0 for r in reports), [(r.label, r.state) for r in reports]
        assert {p: p.stat().st_mtime_ns for p in files} == files, "a complete run rewrote files"
