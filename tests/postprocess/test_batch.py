"""A batch on one orthogonal grid: common voxel, padded extents, the same answer in chunks."""

from __future__ import annotations

import numpy as np
import pytest

from cdiplatform.postprocess import orthogonal_grid, postprocess_scans, voxel_sizes_nm
from cdiplatform.simulate import polyhedron_density, scan_geometry, simulate_detector_frame

CUBE = np.vstack([np.eye(3), -np.eye(3)])
SHAPE = (48, 40, 40)


@pytest.fixture(scope="module")
def batch():
    geo = scan_geometry(pixel=(126, 127), binning=(2, 1, 1))
    n, h = 48, 5.0
    rho = np.stack([polyhedron_density((n, n, n), spacing_nm=h, normals=CUBE, distances_nm=[d] * 6)
                    for d in (50.0, 80.0)])
    _, obj = simulate_detector_frame(rho, None, spacing_nm=h, q_step=geo["q_step"], q_peak=geo["q_peak"],
                                     shape=SHAPE, return_object=True)
    return geo, obj, np.abs(obj) > 0.05


def test_common_grid_holds_every_scan(batch):
    geo, obj, sup = batch
    res = postprocess_scans(obj, sup, q_step=geo["q_step"], q_peak=geo["q_peak"])
    voxel = voxel_sizes_nm(geo["q_step"], SHAPE).min()
    np.testing.assert_allclose(res.grid.spacing_nm, voxel)  # default: the shortest conjugate edge
    assert res.amplitude.shape == (2,) + res.grid.shape
    for s, half in enumerate((50.0, 80.0)):
        m = res.support[s]
        assert not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, :, -1].any())  # padded, not cut
        width = np.ptp(res.grid.x[m.any(axis=(0, 1))]) + voxel
        assert width == pytest.approx(2 * half, abs=2 * voxel)
    assert int(res.grid.z.size // 2) == int(np.argmin(np.abs(res.grid.z)))  # centre n // 2 at 0


def test_chunks_on_a_fixed_grid_give_the_batch_answer(batch):
    geo, obj, sup = batch
    whole = postprocess_scans(obj, sup, q_step=geo["q_step"], q_peak=geo["q_peak"], frame="crystal")
    grid = orthogonal_grid(sup, geo["q_step"], frame="crystal", q_peak=geo["q_peak"])
    part = postprocess_scans(obj[1:], sup[1:], q_step=geo["q_step"], q_peak=geo["q_peak"], grid=grid)
    assert part.grid.frame == "crystal" and part.grid.shape == whole.grid.shape
    np.testing.assert_allclose(part.amplitude[0], whole.amplitude[1])
    np.testing.assert_array_equal(part.support[0], whole.support[1])
