"""The ``cdip`` command: one-line errors, non-zero exits, catalogs left as they were."""

import numpy as np
import pytest
import xarray as xr
import zarr
from typer.testing import CliRunner

from cdiplatform import open_catalog
from cdiplatform.cli import app

runner = CliRunner()

JOB = """
[job]
name = "cli"
seed = 1

[[stage]]
stage = "simulate_2d"
output = "collections/c"
[stage.params]
n_scans = 16
chunk = 8

[[stage]]
stage = "pad"
inputs = { collection = "collections/c" }
output = "collections/p"
"""


def snapshot(path):
    return sorted((p.relative_to(path), p.stat().st_mtime_ns) for p in path.rglob("*"))


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "c.zarr"
    cat = open_catalog(path, mode="a")
    ds = xr.Dataset({"intensity": (("scan", "y", "x"), np.ones((2, 4, 4), np.float32))},
                    coords={"scan": [0, 1], "kind": ("scan", ["measured"] * 2),
                            "sample": ("scan", ["a", "b"]), "source": ("scan", ["t", "t"])})
    cat.write("collections/existing", ds, attrs={})
    return path


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('stage = "pad"', 'stage = "padd"', "unknown stage 'padd'"),
        ("n_scans = 16", 'n_scans = "16"', "params.n_scans: expected int"),
        ('output = "collections/p"', "", "missing the key 'output'"),
        ('inputs = { collection = "collections/c" }', 'inputs = { collection = "collections/nope" }',
         "no node 'collections/nope'"),
    ],
)
def test_bad_jobs_fail_with_one_line_and_leave_the_catalog(tmp_path, catalog, old, new, message):
    job = tmp_path / "job.toml"
    text = JOB.replace(old, new)
    if "nope" in new:  # the first stage is fine; its output exists already only for this case
        text = text.replace('[[stage]]\nstage = "simulate_2d"\noutput = "collections/c"\n[stage.params]\n'
                            'n_scans = 16\nchunk = 8\n', "")
    job.write_text(text)
    before = snapshot(catalog)
    result = runner.invoke(app, ["run", str(job), "--catalog", str(catalog)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert message in result.output.replace("\n", "")
    assert snapshot(catalog) == before


def test_not_a_catalog(tmp_path):
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    for args in (["catalog", "ls", str(tmp_path / "plain.zarr")],
                 ["catalog", "show", str(tmp_path / "plain.zarr"), "collections/x"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "not a catalog" in result.output


def test_ls_and_show(catalog):
    result = runner.invoke(app, ["catalog", "ls", str(catalog)])
    assert result.exit_code == 0 and "collections/existing" in result.output
    result = runner.invoke(app, ["catalog", "show", str(catalog), "collections/missing"])
    assert result.exit_code == 2 and "no node 'collections/missing'" in result.output
    result = runner.invoke(app, ["catalog", "show", str(catalog), "collections/existing"])
    assert result.exit_code == 0 and "intensity" in result.output


def test_dry_run_writes_nothing(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    target = tmp_path / "new.zarr"
    result = runner.invoke(app, ["run", str(job), "--catalog", str(target), "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "simulate_2d" in result.output and "waiting for collections/c" in result.output
    assert not target.exists()


def test_stages_lists_the_stages():
    result = runner.invoke(app, ["stages"])
    assert result.exit_code == 0
    for name in ("simulate_2d", "pad", "prepare", "network_input", "assemble_training", "train", "infer"):
        assert name in result.output


class _BrokenReport:
    """Stands in for distributed.performance_report when bokeh is missing: fails on exit."""

    def __init__(self, filename, mode=None):
        self.filename = filename

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        raise ModuleNotFoundError("No module named 'bokeh'")


def test_a_report_that_cannot_be_written_does_not_fail_the_run(tmp_path, monkeypatch):
    import distributed

    monkeypatch.setattr(distributed, "performance_report", _BrokenReport)
    job = tmp_path / "job.toml"
    job.write_text(JOB)
    target = tmp_path / "new.zarr"
    result = runner.invoke(app, ["run", str(job), "--catalog", str(target), "--workers", "1"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "no performance report" in result.output and "bokeh" in result.output
    assert "performance report:" not in result.output
    cat = open_catalog(target)
    assert all(cat.open(node).attrs["run"]["complete"] for node in ("collections/c", "collections/p"))


def test_ingest_into_a_directory_that_is_not_a_catalog_writes_nothing(tmp_path):
    plain = tmp_path / "some" / "plain" / "dir"
    plain.mkdir(parents=True)
    (plain / "notes.txt").write_text("mine")
    np.save(tmp_path / "good.npy", np.ones((4, 6, 6), np.float32))
    before = snapshot(plain)
    result = runner.invoke(app, ["ingest", "arrays", str(tmp_path / "good.npy"), "--beamtime", "bt",
                                 "--catalog", str(plain)])
    assert result.exit_code == 2 and "not a catalog" in result.output, result.output
    assert snapshot(plain) == before and not (plain / "zarr.json").exists()


def test_two_files_with_one_stem_are_refused_before_anything_is_written(tmp_path):
    (tmp_path / "sub").mkdir()
    for path in (tmp_path / "good.npy", tmp_path / "sub" / "good.npy"):
        np.save(path, np.ones((4, 6, 6), np.float32))
    catalog = tmp_path / "b.zarr"
    result = runner.invoke(app, ["ingest", "arrays", str(tmp_path / "good.npy"), str(tmp_path / "sub" / "good.npy"),
                                 "--beamtime", "bt", "--catalog", str(catalog), "--workers", "1"],
                           env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    text = result.output.replace("\n", "")
    assert str(tmp_path / "good.npy") in text and str(tmp_path / "sub" / "good.npy") in text
    assert not catalog.exists()


def test_messages_keep_their_square_brackets(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text("[jobb]\nname = 'x'\n")
    result = runner.invoke(app, ["run", str(job)], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "(expected [job] and [[stage]])" in result.output, result.output
    job.write_text('[job]\nname = "b"\n[[stage]]\nstage = "cdiplatform.testing.stages:Squares"\n'
                   'output = "results/sq"\n[stage.params]\nn_scans = 4\nchunk = 1\nfail = [2]\n')
    result = runner.invoke(app, ["run", str(job), "--catalog", str(tmp_path / "c.zarr"), "--workers", "1"],
                           env={"COLUMNS": "300"})
    assert result.exit_code == 1
    # a scan that failed alone carries where it was raised: [stages.py:<line>]
    assert "scan 2: ValueError: scan 2 is listed to fail [stages.py:" in result.output, result.output


def test_catalog_ls_of_the_examples_is_short(repo_root):
    result = runner.invoke(app, ["catalog", "ls", str(repo_root / "catalogs" / "examples.zarr")],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "models/cdi_nn_2d" in result.output and "arrays" in result.output
    assert len(result.output.splitlines()) < 40


def test_a_run_logs_no_dask_sizeof_warning(tmp_path, repo_root):
    import subprocess
    import sys

    job = tmp_path / "job.toml"
    job.write_text(JOB + f"""
[[stage]]
stage = "reconstruct"
inputs = {{ collection = "collections/p" }}
select = "0:2"
output = "results/r"
[stage.params]
algorithm = "10*ER"
average_last = 0
n_starts = 1
chunk = 1

[[stage]]
stage = "infer"
inputs = {{ collection = "collections/c", model = "{repo_root / 'catalogs/examples.zarr'}:models/cdi_nn_2d" }}
output = "results/nn"
[stage.params]
chunk = 8
""".replace("n_scans = 16", "n_scans = 16\nsize = 32"))
    proc = subprocess.run([sys.executable, "-m", "cdiplatform.cli.main", "run", str(job), "--catalog",
                           str(tmp_path / "c.zarr"), "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Sizeof calculation" not in proc.stdout + proc.stderr
