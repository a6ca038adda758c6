"""Synthetic catalogs in the layouts the report reads, and their reports, built once per session."""

from __future__ import annotations

import pytest
from report_html import SIZES

from cdiplatform.report import build_report
from cdiplatform.testing.report_catalog import write_report_catalog


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """(catalog path, site) of simulated 3D scans: integer identities, truth, post-processing, gold variables."""
    root = tmp_path_factory.mktemp("simulated")
    write_report_catalog(root / "sim.zarr", gold=True, **SIZES)
    return root / "sim.zarr", build_report(root / "sim.zarr", out=root / "site")


@pytest.fixture(scope="session")
def measured(tmp_path_factory):
    """(catalog path, site) of measured 3D scans: identities "34idc-2020/54"..., no truth."""
    root = tmp_path_factory.mktemp("measured")
    write_report_catalog(root / "meas.zarr", measured=True, **SIZES)
    return root / "meas.zarr", build_report(root / "meas.zarr", out=root / "site")
