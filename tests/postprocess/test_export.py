"""Export round trips: .vti read back by vtk, .cxi read back by h5py."""

from __future__ import annotations

import numpy as np
import pytest

from cdiplatform.postprocess import write_cxi, write_vti


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    shape = (6, 7, 8)  # z, y, x: all different, so that an axis swap shows
    support = np.zeros(shape, bool)
    support[1:5, 2:6, 1:7] = True
    return dict(amplitude=rng.random(shape).astype(np.float32),
                phase=rng.uniform(-3, 3, shape).astype(np.float32),
                strain=(1e-3 * rng.standard_normal(shape)).astype(np.float32), support=support)


def test_vti_round_trip(tmp_path, arrays):
    vtk = pytest.importorskip("vtk")
    from vtk.util.numpy_support import vtk_to_numpy

    path = tmp_path / "scan.vti"
    write_vti(path, arrays, spacing_nm=(2.0, 3.0, 4.0), origin_nm=(-6.0, -9.0, -16.0), frame="crystal")
    reader = vtk.vtkXMLImageDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    assert image.GetDimensions() == (8, 7, 6)  # VTK's (x, y, z)
    assert image.GetSpacing() == (4.0, 3.0, 2.0)
    assert image.GetOrigin() == (-16.0, -9.0, -6.0)
    for name, arr in arrays.items():
        back = vtk_to_numpy(image.GetPointData().GetArray(name)).reshape(arr.shape)
        np.testing.assert_array_equal(back, arr.astype(np.uint8) if arr.dtype == bool else arr)
    # the point at VTK (i, j, k) is the array's [k, j, i], at origin + index * spacing
    pid = image.ComputePointId([5, 2, 3])
    assert vtk_to_numpy(image.GetPointData().GetArray("phase"))[pid] == arrays["phase"][3, 2, 5]
    np.testing.assert_allclose(image.GetPoint(pid), (-16 + 5 * 4, -9 + 2 * 3, -6 + 3 * 2))
    assert image.GetFieldData().GetAbstractArray("frame").GetValue(0) == "crystal"


@pytest.mark.parametrize("change, match", [
    (dict(path="scan.vtk"), r"\.vti"),
    (dict(arrays={"obj": np.ones((2, 2, 2), complex)}), "complex"),
    (dict(arrays={"a": np.ones((2, 2, 2)), "b": np.ones((2, 2, 3))}), "shape"),
    (dict(arrays={"a": np.ones((2, 2))}), r"\(z, y, x\)"),
    (dict(arrays={}), "no arrays"),
    (dict(spacing_nm=(1.0, 0.0, 1.0)), "spacing_nm"),
])
def test_vti_bad_inputs(tmp_path, change, match):
    pytest.importorskip("vtk")
    kw = dict(path="scan.vti", arrays={"a": np.ones((2, 2, 2))}, spacing_nm=1.0)
    kw.update(change)
    with pytest.raises(ValueError, match=match) as info:
        write_vti(tmp_path / kw.pop("path"), kw.pop("arrays"), **kw)
    assert "\n" not in str(info.value)


def test_cxi_round_trip(tmp_path, arrays):
    import h5py

    path = tmp_path / "scan.cxi"
    q_step = np.arange(9.0).reshape(3, 3) * 1e-4
    write_cxi(path, amplitude=arrays["amplitude"], phase=arrays["phase"], support=arrays["support"],
              spacing_nm=(2.0, 3.0, 4.0), origin_nm=(-6.0, -9.0, -16.0), frame="laboratory",
              arrays={"strain": arrays["strain"]}, units={"strain": "1"},
              configuration={"geometry": {"q_step": q_step, "energy_kev": 9.0}, "source": "results/x"},
              command="cdip export", note="test")
    with h5py.File(path, "r") as f:
        assert int(f["cxi_version"][()]) == 150
        obj = f["entry_1/image_1/data"][()]
        np.testing.assert_allclose(np.abs(obj), arrays["amplitude"], rtol=1e-6)
        np.testing.assert_allclose(np.angle(obj), arrays["phase"], atol=1e-5)
        np.testing.assert_array_equal(f["entry_1/image_1/mask"][()], np.where(arrays["support"], 0, 1))
        np.testing.assert_array_equal(f["entry_1/image_1/support"][()].astype(bool), arrays["support"])
        assert f["entry_1/image_1/data_space"][()].decode() == "real"
        np.testing.assert_allclose(f["entry_1/image_1/image_size"][()], np.array([12.0, 21.0, 32.0]) * 1e-9)
        proc = f["entry_1/image_1/process_1"]
        assert proc["program"][()].decode() == "cdiplatform" and proc["command"][()].decode() == "cdip export"
        np.testing.assert_allclose(proc["configuration/geometry/q_step"][()], q_step)
        np.testing.assert_allclose(proc["configuration/spacing_nm"][()], (2.0, 3.0, 4.0))
        assert proc["configuration/frame"][()].decode() == "laboratory"
        assert f["entry_1/image_1/geometry_1/frame"][()].decode() == "laboratory"
        np.testing.assert_allclose(f["entry_1/image_1/geometry_1/translation"][()], [-16e-9, -9e-9, -6e-9])
        assert f["entry_1/image_2/data_type"][()].decode() == "strain"
        np.testing.assert_array_equal(f["entry_1/image_2/data"][()], arrays["strain"])
        np.testing.assert_array_equal(f["entry_1/data_1/data"][()], obj)


def test_cxi_bad_inputs(tmp_path, arrays):
    base = dict(amplitude=arrays["amplitude"], phase=arrays["phase"], support=arrays["support"],
                spacing_nm=1.0, frame="laboratory")
    for change, match in [
        (dict(path="scan.h5"), r"\.cxi"),
        (dict(support=arrays["support"].astype(int)), "boolean"),
        (dict(phase=arrays["phase"][:, :, :3]), "shape"),
        (dict(arrays={"x": np.ones((6, 7, 8), complex)}), "real numbers"),
    ]:
        kw = {"path": "scan.cxi", **base, **change}
        with pytest.raises(ValueError, match=match) as info:
            write_cxi(tmp_path / kw.pop("path"), **kw)
        assert "\n" not in str(info.value)


def test_missing_vtk_is_a_one_line_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vtk", None)  # what an environment without vtk looks like to import
    with pytest.raises(ImportError, match="pip install vtk") as info:
        write_vti(tmp_path / "a.vti", {"a": np.ones((2, 2, 2))}, spacing_nm=1.0)
    assert "\n" not in str(info.value)
