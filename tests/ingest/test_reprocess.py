"""``cdip reprocess`` on the real scan 54 in ../shared, end to end (the README's example), and again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cdiplatform import open_catalog

pytestmark = pytest.mark.shared_data


def reprocess(shared_data, catalog, *extra):
    d = shared_data
    return subprocess.run(
        [sys.executable, "-m", "cdiplatform.cli.main", "reprocess", str(d / "example.spec"), "--frames",
         str(d / "frames" / "Staff20-1a_S{scan:04d}_{point:05d}.tif"), "--dark", str(d / "dark.tif"), "--flat",
         str(d / "whitefield.tif"), "--beamtime", "34idc-2020", "--scans", "54", "--catalog", str(catalog),
         "--workers", "2", *extra], capture_output=True, text=True, timeout=900)


def test_reprocess_scan_54_end_to_end(shared_data, tmp_path):
    catalog = tmp_path / "bt.zarr"
    run = reprocess(shared_data, catalog, "--size", "32")
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Sizeof calculation" not in out and "Traceback" not in out
    cat = open_catalog(catalog)
    assert cat.nodes("raw") == ["raw/34idc-2020/54"]
    phasing = cat.open("collections/34idc-2020_phasing")
    assert phasing["scan"].values.tolist() == ["34idc-2020/54"] and phasing["q_step"].shape == (1, 3, 3)
    for node in ("results/34idc-2020_nn", "results/34idc-2020_er_hio"):
        assert cat.open(node)["status"].values.tolist() == [1], node
    again = reprocess(shared_data, catalog, "--size", "32")
    assert again.returncode == 0 and "nothing recomputed, nothing rewritten" in again.stdout, again.stdout
