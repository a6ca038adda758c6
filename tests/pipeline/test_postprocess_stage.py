"""The postprocess stage on a reconstruction with scan 54's geometry, and cdip export (vti, cxi) read back."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from cdiplatform import open_catalog

N = 24

JOB = """
[job]
name = "post"
[[stage]]
stage = "postprocess"
inputs = { result = "results/r", collection = "collections/c" }
output = "results/r_orthogonal"
[stage.params]
voxel_nm = 20.0
size = 56
chunk = 2
"""


def crystal(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A blob on the conjugate grid with a smooth quadratic phase (a strained crystal), and its support."""
    z, y, x = np.meshgrid(*[np.arange(n) - n // 2] * 3, indexing="ij")
    r2 = (z / 5.0) ** 2 + (y / 7.0) ** 2 + (x / 6.0) ** 2
    support = r2 <= 1.0
    phase = 0.04 * (z - rng.uniform(-1, 1)) ** 2 * support
    return np.where(support, 1.0, 0.0) * np.exp(1j * phase), support


@pytest.fixture
def catalog(tmp_path):
    from cdiplatform.simulate.detector_frame import scan_geometry

    geo = scan_geometry()
    rng = np.random.default_rng(1)
    objs, sups = zip(*[crystal(N, rng) for _ in range(3)])
    obj, sup = np.stack(objs), np.stack(sups)
    ids = np.array(["bt/1", "bt/2", "bt/3"], dtype=object)
    book = {"status": ("scan", np.ones(3, np.uint8)), "reason": ("scan", np.full(3, "", dtype=object))}
    coords = {"scan": ids, "kind": ("scan", ["measured"] * 3), "sample": ("scan", ids), "source": ("scan", ids)}
    collection = xr.Dataset({"intensity": (("scan", "z", "y", "x"), np.ones((3, N, N, N), np.float32)),
                             "q_step": (("scan", "axis", "xyz"), np.broadcast_to(geo["q_step"], (3, 3, 3)).copy()),
                             "q_peak": (("scan", "xyz"), np.broadcast_to(geo["q_peak"], (3, 3)).copy()), **book},
                            coords=coords)
    result = xr.Dataset({"amplitude": (("scan", "z", "y", "x"), np.abs(obj).astype(np.float32)),
                         "phase": (("scan", "z", "y", "x"), np.angle(obj).astype(np.float32)),
                         "support": (("scan", "z", "y", "x"), sup.astype(np.uint8)), **book},
                        coords={"scan": ids})
    path = tmp_path / "c.zarr"
    cat = open_catalog(path, mode="a")
    cat.write("collections/c", collection, attrs={})
    cat.write("results/r", result, attrs={"method": "er_hio", "collection": "collections/c"})
    return path


def cdip(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cdiplatform.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_postprocess_then_export_vti_and_cxi(catalog, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    run = cdip("run", str(job), "--catalog", str(catalog), "--workers", "1", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    ds = open_catalog(catalog).open("results/r_orthogonal").load()
    assert ds.attrs["frame"] == "laboratory" and ds["x"].attrs["units"] == "nm"
    assert float(ds["x"][1] - ds["x"][0]) == pytest.approx(20.0)
    assert (ds["status"].values == 1).all()
    sup = ds["support"].values[0] != 0
    assert 100 < sup.sum() < sup.size / 3
    assert np.isfinite(ds["strain"].values[0][sup]).all()
    # the phase's linear part is removed, its curvature (the strain) stays
    assert np.abs(ds["strain"].values[0][sup]).max() > 0
    q_bragg = float(ds["q_bragg"].values[0])
    np.testing.assert_allclose(ds["displacement"].values[0][sup], -ds["phase"].values[0][sup] / (10 * q_bragg),
                               rtol=1e-4, atol=1e-6)

    out = tmp_path / "files"
    for fmt in ("vti", "cxi"):
        run = cdip("export", str(catalog), "results/r_orthogonal", "--format", fmt, "--out", str(out),
                   "--scans", "bt/2", cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
    import h5py
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    reader = vtk.vtkXMLImageDataReader()
    reader.SetFileName(str(out / "r_orthogonal_bt_2.vti"))
    reader.Update()
    image = reader.GetOutput()
    assert image.GetDimensions() == (56, 56, 56) and image.GetSpacing() == pytest.approx((20.0, 20.0, 20.0))
    strain = vtk_to_numpy(image.GetPointData().GetArray("strain")).reshape(56, 56, 56)
    np.testing.assert_allclose(strain, ds["strain"].values[1], atol=1e-7)
    with h5py.File(out / "r_orthogonal_bt_2.cxi") as f:
        data = f["/entry_1/image_1/data"][...]
        assert data.shape == (56, 56, 56) and np.iscomplexobj(data)
        np.testing.assert_allclose(np.abs(data), ds["amplitude"].values[1], atol=1e-6)
        assert "mask" in f["/entry_1/image_1"]


@pytest.mark.parametrize("change, message", [
    ('collection = "collections/c" }', "no 'q_step'"),   # a result without geometry
    ('result = "results/r"', "is a collection node"),   # a node that is not a result
])
def test_bad_inputs_are_one_line_errors(catalog, tmp_path, change, message):
    cat = open_catalog(catalog, mode="a")
    cat.write("collections/plain", cat.open("collections/c").drop_vars(["q_step", "q_peak"]).load(), attrs={})
    text = JOB.replace('collection = "collections/c" }', 'collection = "collections/plain" }') if "q_step" in message \
        else JOB.replace('result = "results/r"', 'result = "collections/c"')
    job = tmp_path / "job.toml"
    job.write_text(text)
    run = cdip("run", str(job), "--catalog", str(catalog), "--workers", "1", cwd=tmp_path)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), lines
    assert message in lines[0]


RESOLUTION_JOB = """
[job]
name = "resolution"
seed = 3
[[stage]]
stage = "reconstruct"
inputs = { collection = "collections/d" }
output = "results/rec"
[stage.params]
algorithm = "10*ER+30*HIO+10*ER"
n_starts = 2
keep_best = 2
twin = false
fsc = true
device = "cpu"
chunk = 2
[[stage]]
stage = "postprocess"
inputs = { result = "results/rec", collection = "collections/d" }
output = "results/rec_orthogonal"
[stage.params]
voxel_nm = 20.0
size = 32
chunk = 2
"""


def test_the_resolution_of_the_reconstruction_is_carried_beside_the_strain(catalog, tmp_path):
    from cdiplatform.physics.fft import diffraction_intensity

    cat = open_catalog(catalog, mode="a")
    c = cat.open("collections/c").load()
    obj = np.stack([crystal(N, np.random.default_rng(i))[0] for i in range(3)])
    inten = diffraction_intensity(obj, ndim=3)
    counts = np.random.default_rng(0).poisson(1e4 * inten / inten.max()).astype(np.float32)
    cat.write("collections/d", c.assign(intensity=(("scan", "z", "y", "x"), counts)), attrs={})
    job = tmp_path / "job.toml"
    job.write_text(RESOLUTION_JOB)
    # two workers: one torch thread each (one worker would take both cores' threads, slow on a busy machine)
    run = cdip("run", str(job), "--catalog", str(catalog), "--workers", "2", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    rec = open_catalog(catalog).open("results/rec").load()
    post = open_catalog(catalog).open("results/rec_orthogonal").load()
    assert (rec["status"].values == 1).all() and (post["status"].values == 1).all()
    names = ["prtf", "prtf_q", "prtf_resolution", "prtf_resolution_shell", "prtf_crossed", "prtf_crossed_shell",
             "fsc", "fsc_q", "fsc_threshold", "fsc_resolution", "fsc_resolution_shell", "fsc_crossed",
             "fsc_crossed_shell"]
    assert rec["prtf_resolution"].dims == ("scan", "axis") and rec["prtf_resolution"].shape == (3, 3)
    assert rec["axis"].values.tolist() == ["z", "y", "x"] and rec["prtf_crossed"].dtype == bool
    assert rec["prtf"].dims == ("scan", "shell") and rec["prtf"].shape == (3, N // 2)
    assert np.isfinite(rec["prtf_resolution"].values).all() and np.isfinite(rec["fsc_resolution"].values).all()
    for name in names:
        assert post[name].dims == rec[name].dims, name
        np.testing.assert_array_equal(post[name].values, rec[name].values, err_msg=name)
    assert post["prtf_resolution"].attrs["units"] == "nm" and "strain" in post
