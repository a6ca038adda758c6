"""Faults survived with nothing lost, each on real processes: a killed worker, a second run, a stale lock,
a full disk, a scan that hangs, a node left half-allocated; and ``cdip status`` of a running and a
finished run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cdiplatform import open_catalog
from cdiplatform.catalog.lock import lock_path, read_lock
from cdiplatform.testing.conformance import assert_runs_identical

SQUARES = "cdiplatform.testing.stages:Squares"


def job(tmp_path: Path, name: str = "f", **params) -> Path:
    params = {"n_scans": 24, "chunk": 2, **params}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in params.items())
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[job]\nname = "{name}"\nseed = 5\n\n[[stage]]\nstage = "{SQUARES}"\n'
                    f'output = "results/sq"\n[stage.params]\n{lines}\n')
    return path


def cdip(*args, wait=True, **kw):
    proc = subprocess.Popen([sys.executable, "-m", "cdiplatform.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - not there yet
            pass
        time.sleep(0.2)
    return False


def done_scans(catalog: Path) -> int:
    return int(open_catalog(catalog).open("results/sq")["done"].values.sum())


def run_log(catalog: Path) -> list[dict]:
    from cdiplatform.pipeline.runlog import newest_log, read_log

    return read_log(newest_log(catalog))


def test_a_killed_worker_is_replaced_and_every_scan_counted_once(tmp_path):
    import psutil

    path = job(tmp_path, sleep=0.5)
    killed, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
    proc = cdip("run", str(path), "--catalog", str(killed), "--workers", "2", wait=False)
    assert wait_for(lambda: done_scans(killed) >= 4)
    # the LocalCluster's workers: processes the driver spawned (its nannies live in the driver itself)
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
    assert workers, "no worker process found"
    workers[0].send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    (end,) = [e for e in run_log(killed) if e["event"] == "stage_end"]
    assert end["ok"] == 24 and end["failed"] == {} and end["computed"] == 24
    code, out = cdip("run", str(path), "--catalog", str(clean), "--workers", "2")
    assert code == 0, out
    assert_runs_identical(killed, clean, "results/sq")


def test_a_second_run_is_refused_and_status_shows_the_running_one(tmp_path):
    path = job(tmp_path, n_scans=40, sleep=0.4)
    catalog = tmp_path / "c.zarr"
    first = cdip("run", str(path), "--catalog", str(catalog), "--workers", "1", wait=False)
    try:
        assert wait_for(lambda: read_lock(catalog) is not None and done_scans(catalog) >= 2)
        code, out = cdip("run", str(path), "--catalog", str(catalog), "--workers", "1")
        assert code == 3, out
        assert f"is being written by job f (pid {first.pid}" in out.replace("\n", "")
        assert len([line for line in out.splitlines() if line.strip()]) == 1
        code, out = cdip("status", str(catalog), env={**os.environ, "COLUMNS": "200"})
        assert code == 0 and f"running: job f (pid {first.pid}" in out and "results/sq" in out, out
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # the killed run left its lock: stale on this machine (its process is gone), so the next run takes it
    assert read_lock(catalog)["pid"] == first.pid
    code, out = cdip("run", str(path), "--catalog", str(catalog), "--workers", "2")
    assert code == 0, out
    assert read_lock(catalog) is None
    code, out = cdip("status", str(catalog), env={**os.environ, "COLUMNS": "200"})
    assert code == 0 and "no run is writing this catalog" in out and "ended" in out, out
    assert "| 40" in out.replace("│", "|") or " 40 " in out


def test_a_lock_from_another_machine_needs_break_lock(tmp_path):
    path = job(tmp_path, n_scans=4)
    catalog = tmp_path / "c.zarr"
    lock_path(catalog).write_text(json.dumps({"pid": 1, "host": "another-machine", "job": "x",
                                              "started": "2026-01-01T00:00:00+00:00"}))
    code, out = cdip("run", str(path), "--catalog", str(catalog), "--workers", "1")
    assert code == 3 and "--break-lock" in out and "another-machine" in out, out
    assert not catalog.exists(), "a refused run wrote something"
    code, out = cdip("run", str(path), "--catalog", str(catalog), "--workers", "1", "--break-lock")
    assert code == 0, out


@pytest.fixture
def small_disk(tmp_path, require):
    disk = tmp_path / "disk"
    disk.mkdir()
    ok = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                                              capture_output=True).returncode == 0
    require(ok, "a 3 MB tmpfs cannot be mounted here (needs root)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_is_one_line_the_catalog_opens_and_a_rerun_completes(tmp_path, small_disk):
    path = tmp_path / "big.toml"
    path.write_text('[job]\nname = "big"\nseed = 1\n[[stage]]\nstage = "simulate_2d"\noutput = "collections/c"\n'
                    '[stage.params]\nn_scans = 2048\nchunk = 64\n[[stage]]\nstage = "pad"\n'
                    'inputs = { collection = "collections/c" }\noutput = "collections/p"\n')
    catalog = small_disk / "c.zarr"
    code, out = cdip("run", str(path), "--catalog", str(catalog), "--workers", "2")
    assert code == 4, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no space left" in errors[0] and str(catalog) in errors[0], out
    assert "Traceback" not in out
    cat = open_catalog(catalog)  # still a catalog
    assert "collections/c" in cat
    assert not any(p.stat().st_size == 0 for p in (small_disk / "c.reports").glob("*.html"))
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    code, out = cdip("run", str(path), "--catalog", str(catalog), "--workers", "2")
    assert code == 0, out
    assert (open_catalog(catalog).open("collections/p")["status"].values == 1).all()


def test_a_scan_that_hangs_fails_alone_when_it_reaches_its_time_limit(tmp_path):
    path = job(tmp_path, n_scans=6, chunk=3, hang=[4])
    path.write_text(path.read_text().replace('output = "results/sq"', 'output = "results/sq"\ntime_limit = 8'))
    catalog = tmp_path / "c.zarr"
    code, out = cdip("run", str(path), "--catalog", str(catalog), "--workers", "2")
    assert code == 1, out
    ds = open_catalog(catalog).open("results/sq").load()
    assert ds["status"].values.tolist() == [1, 1, 1, 1, 2, 1]
    assert "exceeded its time limit of 8 s" in str(ds["reason"].values[4])
    clean = tmp_path / "clean.zarr"
    cdip("run", str(job(tmp_path, name="g", n_scans=6, chunk=3)), "--catalog", str(clean), "--workers", "2")
    want = open_catalog(clean).open("results/sq").load()
    np.testing.assert_array_equal(ds["value"].values[[0, 1, 2, 3, 5]], want["value"].values[[0, 1, 2, 3, 5]])


def test_a_node_left_half_allocated_is_made_again(tmp_path):
    """What older versions left when killed while allocating: the node and its run record, no bookkeeping."""
    path = job(tmp_path, n_scans=8)
    catalog, clean = tmp_path / "c.zarr", tmp_path / "clean.zarr"
    assert cdip("run", str(path), "--catalog", str(clean), "--workers", "1")[0] == 0
    shutil.copytree(clean, catalog)
    shutil.rmtree(catalog / "results" / "sq" / "done")
    for args in (["--dry-run"], []):
        code, out = cdip("run", str(path), "--catalog", str(catalog), "--workers", "1", *args)
        assert code == 0 and "Traceback" not in out, out
    assert_runs_identical(catalog, clean, "results/sq")
