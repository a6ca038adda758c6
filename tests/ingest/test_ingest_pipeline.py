"""Many-scan ingest (the ingest stages) on a real LocalCluster: one task per scan, bad scans recorded,
the rest land, and a beamtime grows."""

import numpy as np
import pytest
import xarray as xr

from cdiplatform import open_catalog
from cdiplatform.pipeline.cluster import connect
from cdiplatform.pipeline.job import one_stage_job
from cdiplatform.pipeline.runner import run_job
from cdiplatform.pipeline.stages.ingest import parse_scan_list


@pytest.fixture(scope="module")
def client():
    with connect("local", workers=2, dashboard=False) as handle:
        yield handle.client


def ingest(client, catalog, beamtime, *, stage="ingest_spec", new_run=False, **params):
    job = one_stage_job(stage, params=params, output=f"raw/{beamtime}/*", catalog=catalog, name="ingest",
                        origin="test")
    (report,) = run_job(job, client=client, catalog=catalog, new_run=new_run)
    return report


def ingest_spec(client, *, catalog, spec, scans, frames, beamtime, dark, flat):
    return ingest(client, catalog, beamtime, spec=str(spec), scans=",".join(map(str, scans)), frames=frames,
                  dark=str(dark), flat=str(flat))


def test_parse_scan_list():
    assert parse_scan_list("54,60-62") == [54, 60, 61, 62]
    assert parse_scan_list("all") is None
    for bad in ("", "5-3", "a", "1,,x"):
        with pytest.raises(ValueError):
            parse_scan_list(bad)


def test_a_beamtime_with_bad_scans(client, beamtime, tmp_path):
    # scan 2's third frame is truncated; scan 9 is not in the SPEC file
    broken = beamtime.pattern.format(scan=2, point=2)
    data = open(broken, "rb").read()
    open(broken, "wb").write(data[: len(data) // 2])
    catalog = tmp_path / "cat.zarr"
    report = ingest_spec(client, catalog=catalog, spec=beamtime.spec, scans=[1, 2, 3, 9], frames=beamtime.pattern,
                         beamtime="bt1", dark=beamtime.dark, flat=beamtime.white)
    assert report.ok == 2 and sorted(report.failed) == ["bt1/2", "bt1/9"]
    assert "scan_S0002_00002.tif" in report.failed["bt1/2"]
    assert "scan 9" in report.failed["bt1/9"] and "not in SPEC" in report.failed["bt1/9"]
    cat = open_catalog(catalog)
    assert cat.nodes("raw") == ["raw/bt1/1", "raw/bt1/3"]
    record = cat.group_attrs("raw/bt1")["members"]
    assert record["2"]["state"] == "failed" and record["1"]["state"] == "ok"

    raw = xr.open_zarr(catalog, group="raw/bt1/1", consolidated=False).load()
    np.testing.assert_array_equal(raw["frames"].values, beamtime.frames[1])
    assert raw["spec"].sel(spec_column="Monitor").values.tolist() == [1000 + i for i in range(6)]
    assert raw.attrs["energy_kev"] == 9.0 and raw.attrs["camdist_mm"] == 500
    assert raw.attrs["region"] == [2, 10, 4, 14]
    assert cat.attrs("raw/bt1/1")["provenance"]["software"]["name"] == "cdiplatform"

    again = ingest_spec(client, catalog=catalog, spec=beamtime.spec, scans=[1, 3], frames=beamtime.pattern,
                        beamtime="bt1", dark=beamtime.dark, flat=beamtime.white)
    assert again.state == "complete" and again.computed == 0


def test_intensity_arrays(client, tmp_path):
    import h5py

    good = np.random.default_rng(0).poisson(5.0, (4, 6, 6)).astype(np.float32)
    np.save(tmp_path / "a.npy", good)
    with h5py.File(tmp_path / "b.cxi", "w") as f:
        f["/entry_1/data_1/data"] = good * 2
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["/other"] = good
    np.save(tmp_path / "d.npy", np.full((4, 6, 6), np.nan, np.float32))
    catalog = tmp_path / "cat.zarr"
    report = ingest(client, catalog, "other", stage="ingest_arrays",
                    files=[str(tmp_path / n) for n in ("a.npy", "b.cxi", "c.h5", "d.npy")])
    assert report.ok == 2 and sorted(report.failed) == ["other/c", "other/d"]
    assert "/entry_1/data_1/data" in report.failed["other/c"] and "NaN" in report.failed["other/d"]
    frames = open_catalog(catalog).open("raw/other/b")["frames"].values
    np.testing.assert_array_equal(frames, good * 2)


def test_prepare_and_network_input_stages(client, beamtime, tmp_path):
    from cdiplatform.pipeline.job import load_job
    from cdiplatform.pipeline.runner import run_job

    catalog = tmp_path / "cat.zarr"
    ingest_spec(client, catalog=catalog, spec=beamtime.spec, scans=[1, 2], frames=beamtime.pattern,
                beamtime="bt1", dark=beamtime.dark, flat=beamtime.white)
    job = tmp_path / "job.toml"
    job.write_text("""
[job]
name = "prep"
[[stage]]
stage = "prepare"
inputs = { raw = "raw/bt1/*" }
output = "collections/bt1_full"
[stage.params]
size = 8
threshold = 0.0
[[stage]]
stage = "network_input"
inputs = { collection = "collections/bt1_full" }
output = "collections/bt1_4"
[stage.params]
size = 4
target_oversampling = [1.0]
chunk = 2
""")
    reports = run_job(load_job(job, root=tmp_path), client=client, catalog=catalog)
    assert [len(r.failed) for r in reports] == [0, 0] and [r.ok for r in reports] == [2, 2]
    full = open_catalog(catalog).open("collections/bt1_full").load()
    assert full["intensity"].shape == (2, 8, 8, 8)
    assert full["kind"].values.tolist() == ["measured", "measured"]
    assert full["source"].values.tolist() == ["raw/bt1/1", "raw/bt1/2"]
    assert full["energy"].values.tolist() == [9.0, 9.0]
    # scan 1's bright voxel (frame 3, pixel 4, 5) is at the cube centre, the hot pixel masked
    assert np.unravel_index(int(full["intensity"].values[0].argmax()), (8, 8, 8)) == (4, 4, 4)
    assert full["mask"].values[0].any()
    steps = full["steps"].values[0]
    assert "white_field" in steps or "flat" in steps
    small = open_catalog(catalog).open("collections/bt1_4").load()
    assert small["intensity"].shape == (2, 4, 4, 4)
    assert float(small["intensity"].max()) == pytest.approx(1.0)
