"""``--watch``: scans are processed once complete (SPEC says so, frames hold still), aborted ones too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

from cdiplatform import open_catalog
from cdiplatform.testing.beamtime import BeamtimeWriter, SyntheticScan, bragg_peak_stack

JOB = """
[job]
name = "live"
seed = 1
[job.vars]
spec = ""
frames = ""

[[stage]]
stage = "ingest_spec"
output = "raw/live/*"
[stage.params]
spec = "${spec}"
frames = "${frames}"

[[stage]]
stage = "prepare"
inputs = { raw = "raw/live/*" }
output = "collections/live"
[stage.params]
size = 8
threshold = 0.0
"""


def scans_in(catalog) -> list[str]:
    try:
        return open_catalog(catalog).open("collections/live")["scan"].values.tolist()
    except Exception:  # noqa: BLE001 - not made yet
        return []


def wait_until(predicate, timeout=90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_watch_processes_each_scan_once_complete(tmp_path):
    rng = np.random.default_rng(0)
    writer = BeamtimeWriter(tmp_path / "bt", sensor_shape=(16, 16))
    writer.write_file_header()
    writer.write_fields()
    first = SyntheticScan(1, bragg_peak_stack((8, 16, 16), rng))
    writer.write_scan(first)
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    catalog = tmp_path / "c.zarr"
    files = writer.files
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdiplatform.cli.main", "run", str(job), "--catalog", str(catalog), "--workers", "1",
         "--watch", "--poll", "0.5", "--set", f"spec={files.spec}", "--set", f"frames={files.frame_pattern}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert wait_until(lambda: scans_in(catalog) == ["live/1"]), "scan 1 was not processed"
        # scan 2 is being recorded: half its points, no next scan yet
        second = SyntheticScan(2, bragg_peak_stack((8, 16, 16), rng))
        writer.begin_scan(second)
        for point in range(4):
            writer.write_point(second, point)
        time.sleep(3)  # several polls
        assert scans_in(catalog) == ["live/1"], "a scan still being recorded was processed"
        for point in range(4, 8):
            writer.write_point(second, point)
        writer.end_scan(second)
        assert wait_until(lambda: scans_in(catalog) == ["live/1", "live/2"]), "scan 2 was not processed"
        # scan 3 is aborted after 5 of its 8 points: complete with the points it has
        third = SyntheticScan(3, bragg_peak_stack((5, 16, 16), rng), planned_points=8, aborted=True)
        writer.write_scan(third)
        assert wait_until(lambda: scans_in(catalog) == ["live/1", "live/2", "live/3"]), "scan 3 was not processed"
        cat = open_catalog(catalog)
        raw3 = cat.open("raw/live/3")
        assert raw3.sizes["frame"] == 5 and bool(raw3.attrs.get("aborted"))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert "watch stopped" in out, out
    assert out.count("watch: 2 complete: processing") == 1, out
    # each scan was read once: its raw node was written by one run, never rewritten
    history = open_catalog(catalog).attrs("raw/live/1")["history"]
    assert history.count("written by run") == 1
