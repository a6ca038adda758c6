import multiprocessing

import numpy as np
import pytest
import xarray as xr
import zarr

from cdiplatform import open_catalog
from cdiplatform.catalog import CatalogError, NodeNotFoundError, SchemaError, check_node_path
from cdiplatform.catalog.hashing import dataset_hash
from cdiplatform.catalog.provenance import history_line, software_info, stable_hash


def small_collection(n=4, size=8, kind="simulated") -> xr.Dataset:
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {
            "intensity": (("scan", "y", "x"), rng.random((n, size, size), dtype=np.float32)),
            "amplitude": (("scan", "y", "x"), rng.random((n, size, size), dtype=np.float32)),
        },
        coords={
            "scan": np.arange(n),
            "kind": ("scan", [kind] * n),
            "sample": ("scan", [f"s{i}" for i in range(n)]),
            "source": ("scan", ["test"] * n),
        },
    )


@pytest.fixture
def cat(tmp_path):
    return open_catalog(tmp_path / "c.zarr", mode="a")


def test_new_catalog_has_the_layout_and_opens_with_plain_xarray(cat):
    tree = xr.open_datatree(cat.path, engine="zarr", consolidated=False)
    assert set(tree.children) == {"raw", "collections", "results", "models", "training", "benchmarks", "reports"}
    assert cat.nodes() == []


def test_round_trip(cat):
    ds = small_collection()
    cat.write("collections/c1", ds, attrs={"grid": 8})
    assert cat.nodes() == ["collections/c1"]
    assert cat.nodes("result") == []
    back = cat.open("collections/c1").load()
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())
    plain = xr.open_zarr(cat.path, group="collections/c1", consolidated=False)
    np.testing.assert_array_equal(plain["intensity"].values, ds["intensity"].values)
    assert cat.attrs("collections/c1")["grid"] == 8


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ds: ds.drop_vars("intensity"), "missing data variable 'intensity'"),
        (lambda ds: ds.assign(intensity=ds["intensity"].astype("float64")), "must be float32"),
        (lambda ds: ds.rename_dims({"y": "row"}), "expected ('scan', 'y', 'x')"),
        (lambda ds: ds.drop_vars("source"), "missing per-scan coordinate 'source'"),
        (lambda ds: ds.assign_coords(kind=("scan", ["alien"] * 4)), "'kind' holds ['alien']"),
    ],
)
def test_schema_errors_name_the_node_and_write_nothing(cat, mutate, message):
    with pytest.raises(SchemaError) as info:
        cat.write("collections/bad", mutate(small_collection()), attrs={})
    assert "collections/bad" in str(info.value)
    assert message in str(info.value)
    assert "collections/bad" not in cat
    assert not (cat.path / "collections" / "bad").exists()


@pytest.mark.parametrize("node", ["collection/x", "collections", "collections/a/b", "raw/x", "results/ a"])
def test_bad_node_paths(node):
    with pytest.raises(CatalogError):
        check_node_path(node)


def test_a_directory_that_is_not_a_catalog(tmp_path):
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(CatalogError, match="not a catalog"):
        open_catalog(tmp_path / "plain.zarr")
    (tmp_path / "file.zarr").write_text("hello")
    with pytest.raises(CatalogError, match="file.zarr"):
        open_catalog(tmp_path / "file.zarr")
    with pytest.raises(CatalogError, match="does not exist"):
        open_catalog(tmp_path / "missing.zarr")


def test_missing_node_and_read_only(cat):
    with pytest.raises(NodeNotFoundError, match="no node 'collections/none'"):
        cat.open("collections/none")
    ro = open_catalog(cat.path)
    with pytest.raises(CatalogError, match="read-only"):
        ro.write("collections/c1", small_collection(), attrs={})


def test_query_by_per_scan_coordinate_and_attribute(cat):
    cat.write("collections/sim", small_collection(kind="simulated"), attrs={"beamtime": ""})
    cat.write("collections/meas", small_collection(kind="measured"), attrs={"beamtime": "2026-34idc"})
    assert cat.query("collection", kind="measured") == ["collections/meas"]
    assert cat.query("collection", beamtime="2026-34idc") == ["collections/meas"]
    assert cat.query("collection", kind="measured", beamtime="other") == []


def test_a_node_written_whole_records_its_content_hash_in_one_scheme(cat):
    cat.write("collections/c1", small_collection(), attrs={"content_hash": "a stale value is replaced"})
    cat.write("collections/c2", small_collection(), attrs={"title": "same content, other attributes"})
    changed = small_collection()
    changed["intensity"][0, 0, 0] += 1
    cat.write("collections/c3", changed, attrs={})
    stored = cat.attrs("collections/c1")["content_hash"]
    assert cat.content_hash("collections/c1") == stored == cat.content_hash("collections/c2")
    assert cat.content_hash("collections/c3") != stored
    ds = small_collection()
    assert stored == dataset_hash({str(k): v.values for k, v in ds.variables.items()})


def test_provenance_helpers():
    info = software_info()
    assert info["name"] == "cdiplatform" and info["version"]
    assert "commit" in info and "dirty" in info
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert history_line("did it").endswith(")") and "did it" in history_line("did it")


def raw_scan(frames=2, size=4) -> xr.Dataset:
    return xr.Dataset({"frames": (("frame", "det_y", "det_x"), np.zeros((frames, size, size), np.float32))})


def _write_to_new_beamtimes(path, rounds, scan, barrier, failures):
    """One of several processes: per round, with the others at once, set (the same) attributes of
    a new beamtime group, then write a scan of another new beamtime."""
    cat = open_catalog(path, mode="a")
    for k in range(rounds):
        for what, act in (
            (f"raw/meta{k}", lambda k=k: cat.update_group_attrs(f"raw/meta{k}", {"round": k})),
            (f"raw/bt{k}/scan_{scan}", lambda k=k: cat.write(f"raw/bt{k}/scan_{scan}", raw_scan(), attrs={})),
        ):
            barrier.wait()
            try:
                act()
            except Exception as exc:  # noqa: BLE001 - counted and reported by the test
                failures.put(f"{what}: {type(exc).__name__}: {exc}")


def test_writers_racing_to_a_new_beamtime_group_all_write(cat):
    # Workers ingesting scans of a new beamtime all create raw/<beamtime>: zarr's
    # require_group checks, then creates, and the loser of that race must take
    # the group the other made (this failed ingest in CI once).
    ctx = multiprocessing.get_context("spawn")
    n, rounds = 4, 30
    barrier, failures = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=_write_to_new_beamtimes, args=(str(cat.path), rounds, i, barrier, failures))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    lost = []
    while not failures.empty():
        lost.append(failures.get())
    assert lost == []
    assert [p.exitcode for p in procs] == [0] * n
    assert len(cat.nodes("raw")) == n * rounds
    assert [cat.group_attrs(f"raw/meta{k}") for k in range(rounds)] == [{"round": k} for k in range(rounds)]
