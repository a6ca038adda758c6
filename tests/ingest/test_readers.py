"""TIFF frames, fields and generic arrays, with every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cdiplatform.ingest import (
    IngestError,
    Region,
    frame_files,
    read_field,
    read_frames,
    read_intensity,
    read_tiff,
)


def _write(path: Path, arr: np.ndarray) -> Path:
    import tifffile

    tifffile.imwrite(path, arr)
    return path


def _series(tmp_path: Path, n: int = 5, shape=(6, 7), dtype=np.int32) -> list[Path]:
    rng = np.random.default_rng(0)
    return [_write(tmp_path / f"f_{i:03d}.tif", rng.integers(0, 50, shape).astype(dtype)) for i in range(n)]


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.float32])
def test_read_frames_fast_and_tifffile_agree(tmp_path, dtype):
    import tifffile

    files = _series(tmp_path, dtype=dtype)
    expected = np.stack([tifffile.imread(f) for f in files])
    for fast in (True, False):
        frames = read_frames(files, scan=1, fast=fast)
        assert frames.dtype == dtype and frames.shape == (5, 6, 7)
        np.testing.assert_array_equal(frames, expected)


@pytest.mark.parametrize("fast", [True, False])
def test_frames_of_other_layouts_and_a_safely_castable_dtype(tmp_path, fast):
    import tifffile

    files = _series(tmp_path, n=3)
    odd = np.full((6, 7), 9, dtype=np.int32)
    tifffile.imwrite(files[1], odd, compression="zlib")  # same shape, other layout
    tifffile.imwrite(files[2], np.full((6, 7), 4, dtype=np.uint16))  # fits int32
    out = read_frames(files, fast=fast)  # the fast path falls back to tifffile for them
    np.testing.assert_array_equal(out[1], odd)
    np.testing.assert_array_equal(out[2], 4)
    tifffile.imwrite(files[2], np.full((6, 7), 0.5, dtype=np.float64))
    with pytest.raises(IngestError, match="dtype float64") as info:
        read_frames(files, scan=2, fast=fast)
    assert info.value.path == str(files[2])


@pytest.mark.parametrize("fast", [True, False])
def test_frames_without_signal_are_refused(tmp_path, fast):
    files = [_write(tmp_path / f"f_{i:03d}.tif", np.zeros((6, 7), np.int32)) for i in range(3)]
    with pytest.raises(IngestError, match="no signal.*3 frames.*f_000.tif to f_002.tif") as info:
        read_frames(files, scan=54, fast=fast)
    assert info.value.scan == 54 and "scan 54" in str(info.value)
    _write(files[1], np.eye(6, 7, dtype=np.int32))  # one count is signal
    assert read_frames(files, scan=54).sum() == 6


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path: Path) -> None:
    path.write_bytes(b"not a tiff at all" * 10)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _reshape(path: Path) -> None:
    _write(path, np.zeros((6, 8), dtype=np.int32))


def _nan(path: Path) -> None:
    arr = np.zeros((6, 7), dtype=np.float32)
    arr[2, 3] = np.nan
    _write(path, arr)


def _negative(path: Path) -> None:
    arr = np.zeros((6, 7), dtype=np.int32)
    arr[1, 1] = -4
    _write(path, arr)


def _two_pages(path: Path) -> None:
    import tifffile

    with tifffile.TiffWriter(path) as tw:
        tw.write(np.zeros((6, 7), np.int32))
        tw.write(np.zeros((6, 7), np.int32))


@pytest.mark.parametrize("spoil, message", [
    (_truncate, "truncated|not a readable TIFF"),
    (_garble, "not a readable TIFF"),
    (_empty, "empty"),
    (_reshape, "shape"),
    (_nan, "NaN"),
    (_negative, "negative"),
    (_two_pages, "2 images"),
])
@pytest.mark.parametrize("fast", [True, False])
def test_bad_frame_names_file_and_scan(tmp_path, spoil, message, fast):
    dtype = np.float32 if spoil is _nan else np.int32
    files = _series(tmp_path, n=4, dtype=dtype)
    spoil(files[2])
    with pytest.raises(IngestError, match=message) as info:
        read_frames(files, scan=17, fast=fast)
    assert info.value.path == str(files[2])
    assert info.value.scan == 17
    assert "f_002.tif" in str(info.value) and "scan 17" in str(info.value)


def test_bad_first_frame(tmp_path):
    files = _series(tmp_path, n=2)
    _truncate(files[0])
    with pytest.raises(IngestError) as info:
        read_frames(files, scan=3)
    assert info.value.path == str(files[0])


def test_frame_files_missing_and_extra(tmp_path):
    pattern = str(tmp_path / "s{scan:02d}_{point:03d}.tif")
    for i in range(4):
        _write(Path(pattern.format(scan=5, point=i)), np.zeros((2, 2), np.int32))
    assert len(frame_files(pattern, 5, 4)) == 4
    with pytest.raises(IngestError, match="frame count differs") as info:
        frame_files(pattern, 5, 3)  # SPEC says 3 points, 4 frames on disk
    assert info.value.scan == 5 and "4 files match" in str(info.value)
    Path(pattern.format(scan=5, point=1)).unlink()
    with pytest.raises(IngestError, match="1 of 4 frames missing") as info:
        frame_files(pattern, 5, 4)
    assert "s05_001.tif" in str(info.value)
    with pytest.raises(IngestError, match="no \\{point\\}"):
        frame_files(str(tmp_path / "x.tif"), 5, 4)


def test_region_from_uimr_and_fields(tmp_path):
    region = Region.from_uimr("4 10 2 8 1")  # minX sizeX minY sizeY
    assert region.as_tuple() == (2, 10, 4, 14)
    assert region.shape == (8, 10)
    white = _write(tmp_path / "white.tif", np.full((16, 20), 3.0, np.float32))
    field = read_field(white, kind="white", region=region)
    assert field.shape == (16, 20) and field[region.slices].shape == (8, 10)
    with pytest.raises(IngestError, match="does not fit the white field") as info:
        read_field(white, kind="white", region=Region(0, 8, 15, 25), scan=4)
    assert info.value.path == str(white) and info.value.scan == 4


@pytest.mark.parametrize("kind, values, ok", [
    ("white", [-1.0], False),
    ("dark", [-1.0], True),  # a subtracted dark may be negative
    ("dark", [np.nan], False),
    ("white", [np.inf], False),
])
def test_field_values(tmp_path, kind, values, ok):
    arr = np.ones((4, 4), np.float32)
    arr[1, 2] = values[0]
    path = _write(tmp_path / f"{kind}.tif", arr)
    if ok:
        assert read_field(path, kind=kind)[1, 2] == values[0]
    else:
        with pytest.raises(IngestError, match="negative|NaN") as info:
            read_field(path, kind=kind)
        assert info.value.path == str(path)


def test_read_tiff_missing(tmp_path):
    with pytest.raises(IngestError, match="not found"):
        read_tiff(tmp_path / "absent.tif", scan=1)


# -- generic arrays ----------------------------------------------------------------------

@pytest.fixture
def cube() -> np.ndarray:
    return np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".h5", ".cxi"])
def test_read_intensity_formats(tmp_path, cube, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".npy":
        np.save(path, cube[None])  # a leading axis of 1 is dropped
    elif suffix == ".npz":
        np.savez(path, intensity=cube, other=np.zeros(3))
    else:
        import h5py

        with h5py.File(path, "w") as h5:
            h5.create_dataset("/entry_1/data_1/data", data=cube)
    np.testing.assert_array_equal(read_intensity(path), cube)


def test_hdf5_without_dataset(tmp_path, cube):
    import h5py

    path = tmp_path / "x.cxi"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("/entry_1/image_1/data", data=cube)
    with pytest.raises(IngestError, match="no dataset /entry_1/data_1/data") as info:
        read_intensity(path, scan=8)
    assert "/entry_1/image_1/data" in str(info.value)  # lists what is there
    assert info.value.path == str(path) and info.value.scan == 8
    np.testing.assert_array_equal(read_intensity(path, dataset="/entry_1/image_1/data"), cube)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"garbage" * 5), "not a NumPy .npy file"),
    (lambda p: p.write_text("1 2 3\n4 5 6\n"), "not a NumPy .npy file: it starts with b'1 2 3"),
    (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00garbage"), "not readable"),
    (lambda p: np.save(p, np.zeros((2, 2, 2))), "no signal"),
    (lambda p: np.save(p, np.full((2, 2, 2), np.nan)), "NaN"),
    (lambda p: np.save(p, -np.ones((2, 2, 2))), "negative"),
    (lambda p: np.save(p, np.ones((2, 2, 2), complex)), "complex|dtype"),
    (lambda p: np.save(p, np.ones((2, 2))), "3 dimensions"),
    (lambda p: np.save(p, np.ones((0, 2, 2))), "empty|dimensions"),
])
def test_bad_npy(tmp_path, make, message):
    path = tmp_path / "bad.npy"
    make(path)
    with pytest.raises(IngestError, match=message) as info:
        read_intensity(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_intensity_without_signal_names_file_and_scan(tmp_path, suffix):
    path = tmp_path / f"zero{suffix}"
    if suffix == ".npz":
        np.savez(path, data=np.zeros((3, 4, 5), np.float32))
    else:
        import h5py

        with h5py.File(path, "w") as h5:
            h5.create_dataset("/entry_1/data_1/data", data=np.zeros((3, 4, 5), np.uint32))
    with pytest.raises(IngestError, match="no signal: intensity of shape \\(3, 4, 5\\) is 0") as info:
        read_intensity(path, scan=12)
    assert info.value.path == str(path) and info.value.scan == 12


def test_text_file_named_npz(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("not an archive")
    with pytest.raises(IngestError, match="not a NumPy .npz file"):
        read_intensity(path)


def test_all_zero_npy_dark_field_is_accepted(tmp_path):
    path = tmp_path / "dark.npy"
    np.save(path, np.zeros((4, 4)))
    assert not read_field(path, kind="dark").any()


def test_npz_without_the_array(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=np.ones((2, 2, 2)), b=np.ones((2, 2, 2)))
    with pytest.raises(IngestError, match="no array None.*a, b"):
        read_intensity(path)
    assert read_intensity(path, dataset="b").shape == (2, 2, 2)


def test_ingest_error_survives_pickling():
    import pickle

    err = IngestError("frame file is empty", path="/data/f.tif", scan="54.2")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, IngestError) and isinstance(back, ValueError)
    assert (back.path, back.scan, str(back)) == (err.path, err.scan, str(err))
    assert str(err) == "file /data/f.tif, scan 54.2: frame file is empty"
