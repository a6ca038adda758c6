"""The runner on a real LocalCluster: resume, failures, retries, refusal, GPU routing, SIGKILL."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

from cdiplatform import open_catalog
from cdiplatform.catalog import STATUS_OK
from cdiplatform.pipeline.cluster import connect
from cdiplatform.pipeline.job import JobError, load_job
from cdiplatform.pipeline.runner import plan_job, run_job

SQUARES = "cdiplatform.testing.stages:Squares"


@pytest.fixture(scope="module")
def client():
    with connect("local", workers=2, gpu_workers=1, dashboard=False) as handle:
        yield handle.client


def job_file(tmp_path, name="j", seed=11, **params):
    params = {"n_scans": 24, "chunk": 5, **params}
    lines = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in params.items())
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[job]\nname = "{name}"\nseed = {seed}\n\n[[stage]]\nstage = "{SQUARES}"\n'
                    f'output = "results/sq"\n[stage.params]\n{lines}\n')
    return load_job(path, root=tmp_path)


def data_vars(cat_path, node="results/sq"):
    ds = open_catalog(cat_path).open(node).load()
    return ds.drop_vars(["seconds"]).drop_attrs()


def test_run_then_rerun_recomputes_nothing(client, tmp_path):
    job = job_file(tmp_path)
    cat = tmp_path / "c.zarr"
    (first,) = run_job(job, client=client, catalog=cat)
    assert first.state == "new" and first.computed == 24 and first.ok == 24 and not first.failed
    ds = data_vars(cat)
    assert ds["status"].values.tolist() == [STATUS_OK] * 24
    assert ds["done"].values.all()
    np.testing.assert_allclose(np.floor(ds["value"].values), np.arange(24) ** 2)
    mtimes = {p: p.stat().st_mtime_ns for p in (cat / "results" / "sq").rglob("*") if p.is_file()}
    (second,) = run_job(job, client=client, catalog=cat)
    assert second.state == "complete" and second.computed == 0
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes, "a complete run rewrote files"
    prov = open_catalog(cat).provenance("results/sq")
    assert prov["stage"]["params"]["n_scans"] == 24 and prov["seed"] == 11
    assert prov["software"]["version"] and prov["finished"]


def test_same_data_whatever_the_chunking(client, tmp_path):
    a = job_file(tmp_path, name="a", chunk=5)
    b = job_file(tmp_path, name="b", chunk=24)
    run_job(a, client=client, catalog=tmp_path / "a.zarr")
    run_job(b, client=client, catalog=tmp_path / "b.zarr")
    da, db = data_vars(tmp_path / "a.zarr"), data_vars(tmp_path / "b.zarr")
    xr.testing.assert_identical(da[["value", "grid", "note", "digest"]], db[["value", "grid", "note", "digest"]])


def test_a_failing_scan_is_recorded_and_the_rest_lands(client, tmp_path):
    job = job_file(tmp_path, fail=[3, 12])
    cat = tmp_path / "c.zarr"
    (report,) = run_job(job, client=client, catalog=cat)
    assert sorted(report.failed) == [3, 12] and report.ok == 22
    assert "scan 3 is listed to fail" in report.failed[3]
    bad = open_catalog(cat).failed("results/sq")
    assert bad["scan"].values.tolist() == [3, 12]
    ds = data_vars(cat)
    assert np.isnan(ds["value"].values[[3, 12]]).all()
    assert not np.isnan(np.delete(ds["value"].values, [3, 12])).any()


def test_failed_scans_are_retried_on_resume_and_only_they(client, tmp_path):
    flag = tmp_path / "failing.txt"
    flag.write_text("7")
    job = job_file(tmp_path, fail_file=str(flag))
    cat = tmp_path / "c.zarr"
    (first,) = run_job(job, client=client, catalog=cat)
    assert list(first.failed) == [7]
    before = data_vars(cat)
    flag.unlink()
    (second,) = run_job(job, client=client, catalog=cat)
    assert second.state == "resume" and second.computed == 1 and second.ok == 1 and not second.failed
    after = data_vars(cat)
    assert after["status"].values.tolist() == [STATUS_OK] * 24
    keep = np.arange(24) != 7
    np.testing.assert_array_equal(after["value"].values[keep], before["value"].values[keep])
    # the retried scan equals what an uninterrupted run gives
    clean = job_file(tmp_path, name="clean", fail_file=str(flag))
    run_job(clean, client=client, catalog=tmp_path / "clean.zarr")
    xr.testing.assert_identical(after[["value", "grid"]], data_vars(tmp_path / "clean.zarr")[["value", "grid"]])


def test_a_mismatched_resume_is_refused_unless_a_new_run_is_asked_for(client, tmp_path):
    cat = tmp_path / "c.zarr"
    run_job(job_file(tmp_path), client=client, catalog=cat)
    before = data_vars(cat)
    changed = job_file(tmp_path, seed=12)
    with pytest.raises(JobError, match="written by another run"):
        run_job(changed, client=client, catalog=cat)
    xr.testing.assert_identical(data_vars(cat), before)
    (report,) = run_job(changed, client=client, catalog=cat, new_run=True)
    assert report.state == "new" and report.ok == 24
    assert not np.array_equal(data_vars(cat)["value"].values, before["value"].values)


def test_dry_run_says_what_is_done_and_writes_nothing(client, tmp_path):
    flag = tmp_path / "failing.txt"
    flag.write_text("0 1")
    job = job_file(tmp_path, fail_file=str(flag))
    cat = tmp_path / "c.zarr"
    (fresh,) = plan_job(job, catalog=cat)
    assert fresh.state == "new" and fresh.pending == 24 and not cat.exists()
    run_job(job, client=client, catalog=cat)
    (again,) = plan_job(job, catalog=cat)
    assert again.state == "resume" and again.pending == 2 and again.done == 22


def test_a_chunk_that_cannot_be_written_reports_every_scan_of_it(client, tmp_path):
    job = job_file(tmp_path, unwritable=[7])  # chunk 5:10 cannot be stored
    cat = tmp_path / "c.zarr"
    (report,) = run_job(job, client=client, catalog=cat)
    assert sorted(report.failed) == [5, 6, 7, 8, 9]
    assert all(why.startswith("chunk not written") for why in report.failed.values())
    assert report.ok == 19
    ds = data_vars(cat)
    assert not ds["done"].values[5:10].any() and ds["done"].values[:5].all()


def test_a_scan_failed_upstream_is_screened_once_with_its_reason(client, tmp_path):
    path = tmp_path / "chain.toml"
    path.write_text(textwrap.dedent(f"""
        [job]
        name = "chain"
        [[stage]]
        stage = "{SQUARES}"
        output = "results/sq"
        [stage.params]
        n_scans = 12
        chunk = 4
        fail = [5]
        [[stage]]
        stage = "cdiplatform.testing.stages:Squares"
        output = "results/part"
        [stage.params]
        n_scans = 8
        chunk = 4
        [[stage]]
        stage = "cdiplatform.testing.stages:Noisy"
        inputs = {{ source = "results/sq", other = "results/part" }}
        output = "results/joined"
    """))
    reports = run_job(load_job(path, root=tmp_path), client=client, catalog=tmp_path / "c.zarr")
    joined = reports[-1]
    assert joined.failed[5] == "failed upstream in results/sq: scan 5 is listed to fail"
    assert sorted(joined.failed) == [5, 8, 9, 10, 11]
    assert joined.failed[9] == "scan 9 is not in results/part"
    cat = open_catalog(tmp_path / "c.zarr")
    ds = cat.open("results/joined").load()
    sq, part = cat.open("results/sq").load(), cat.open("results/part").load()
    ok = [0, 1, 2, 3, 4, 6, 7]
    # joined on the scans' identities: scan i of one input meets scan i of the other
    np.testing.assert_array_less(sq["value"].values[ok] + part["value"].values[ok], ds["value"].values[ok])
    np.testing.assert_array_less(ds["value"].values[ok], sq["value"].values[ok] + part["value"].values[ok] + 1)


def test_torch_stages_go_to_the_gpu_worker(client, tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(textwrap.dedent("""
        [job]
        name = "where"
        [[stage]]
        stage = "cdiplatform.testing.stages:WhereTorchRuns"
        output = "results/where"
        [stage.params]
        n_scans = 8
    """))
    info = client.scheduler_info(n_workers=-1)["workers"]
    gpu = [w["pid"] if "pid" in w else None for w in info.values() if w.get("resources", {}).get("GPU")]
    pids = client.run(os.getpid)
    gpu_addr = [a for a, w in info.items() if w.get("resources", {}).get("GPU")]
    assert len(gpu_addr) == 1 and gpu
    run_job(load_job(path, root=tmp_path), client=client, catalog=tmp_path / "c.zarr")
    ran = set(open_catalog(tmp_path / "c.zarr").open("results/where")["pid"].values.tolist())
    assert ran == {pids[gpu_addr[0]]}


def _cdip(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "cdiplatform.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


def test_sigkill_halfway_then_resume_gives_identical_data(tmp_path):
    job = job_file(tmp_path, n_scans=40, chunk=2, sleep=0.4)
    killed, clean = tmp_path / "killed.zarr", tmp_path / "clean.zarr"
    proc = _cdip("run", str(job.path), "--catalog", str(killed), "--workers", "2")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            done = open_catalog(killed).open("results/sq")["done"].values.sum()
        except Exception:  # noqa: BLE001 - not allocated yet
            continue
        if 4 <= done < 30:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = open_catalog(killed).open("results/sq")["done"].values.sum()
    assert 0 < partial < 40, f"the kill came at {partial} of 40 scans"
    resumed = _cdip("run", str(job.path), "--catalog", str(killed), "--workers", "2")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "resuming" in out
    full = _cdip("run", str(job.path), "--catalog", str(clean), "--workers", "2")
    out, _ = full.communicate(timeout=300)
    assert full.returncode == 0, out
    xr.testing.assert_identical(data_vars(killed), data_vars(clean))
    rerun = _cdip("run", str(job.path), "--catalog", str(clean), "--workers", "2")
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and "nothing recomputed, nothing rewritten" in out


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _map_in_a_task(n: int) -> list[int]:
    from cdiplatform.pipeline.tasks import _map_on_cluster

    return _map_on_cluster(_pid_after, [0.3] * n)


def test_a_task_stage_maps_its_calls_over_the_workers(client):
    # the report stage's scan pages: a task of a worker of one thread hands out calls to every worker and
    # waits for them without holding its slot
    worker_pids = set(client.run(os.getpid).values())
    pids = client.submit(_map_in_a_task, 8, pure=False).result(timeout=120)
    assert len(pids) == 8 and set(pids) <= worker_pids
    assert len(set(pids)) == 2
    from cdiplatform.pipeline.tasks import _map_on_cluster

    assert _map_on_cluster(_pid_after, [0, 0]) == [os.getpid()] * 2  # outside a worker: here, in order


WAVE_JOB = """
[job]
name = "wave"
[[stage]]
stage = "{squares}"
output = "results/a"
[stage.params]
n_scans = 6
chunk = 1
sleep = 0.2
[[stage]]
stage = "cdiplatform.testing.stages:Noisy"
inputs = {{ source = "results/a" }}
output = "results/c"
[[stage]]
stage = "{squares}"
output = "results/b"
[stage.params]
n_scans = 6
chunk = 1
sleep = 0.2
"""


def test_a_stage_starts_once_the_stages_it_reads_have_finished(client, tmp_path):
    # a stage barrier left every worker but one idle while a stage's last chunks finished: a stage that
    # reads none of the running ones' outputs starts at once, one that reads them waits for them
    events = []
    job = tmp_path / "wave.toml"
    job.write_text(WAVE_JOB.format(squares=SQUARES))
    reports = run_job(load_job(job, root=tmp_path), client=client, catalog=tmp_path / "c.zarr",
                      on_stage_start=lambda r, n: events.append(("start", r.node)),
                      on_stage_end=lambda r: events.append(("end", r.node)))
    assert [r.node for r in reports] == ["results/a", "results/c", "results/b"]
    assert all(r.success and r.ok == 6 for r in reports)
    assert events.index(("start", "results/b")) < events.index(("end", "results/a"))
    assert events.index(("start", "results/c")) > events.index(("end", "results/a"))
    # the same data as a run of each stage alone
    stages = WAVE_JOB.format(squares=SQUARES).split("[[stage]]")
    alone = tmp_path / "alone.toml"
    alone.write_text(stages[0] + "[[stage]]" + stages[3])
    run_job(load_job(alone, root=tmp_path), client=client, catalog=tmp_path / "alone.zarr")
    xr.testing.assert_identical(data_vars(tmp_path / "c.zarr", "results/b"),
                                data_vars(tmp_path / "alone.zarr", "results/b"))
    assert {r.state for r in run_job(load_job(job, root=tmp_path), client=client,
                                     catalog=tmp_path / "c.zarr")} == {"complete"}


def test_a_stage_refused_beside_running_ones_is_raised_once_they_finished(client, tmp_path):
    # b starts beside a; b's node was written by another run, so b is refused: a still ends complete
    stages = WAVE_JOB.format(squares=SQUARES).split("[[stage]]")
    only_b = tmp_path / "b.toml"
    only_b.write_text(stages[0] + "[[stage]]" + stages[3].replace("sleep = 0.2", "sleep = 0.0\nsize = 3"))
    run_job(load_job(only_b, root=tmp_path), client=client, catalog=tmp_path / "c.zarr")
    both = tmp_path / "ab.toml"
    both.write_text(stages[0] + "[[stage]]" + stages[1] + "[[stage]]" + stages[3])
    with pytest.raises(JobError, match="written by another run"):
        run_job(load_job(both, root=tmp_path), client=client, catalog=tmp_path / "c.zarr")
    assert open_catalog(tmp_path / "c.zarr").attrs("results/a")["run"]["complete"] is True
