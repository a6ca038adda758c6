import textwrap

import pytest

from cdiplatform.pipeline.job import JobError, load_job

GOOD = """
[job]
name = "t"
seed = 3

[[stage]]
stage = "cdiplatform.testing.stages:Squares"
output = "results/sq"
[stage.params]
n_scans = 10
fail = [1]
"""


def write(tmp_path, text):
    path = tmp_path / "job.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_job(tmp_path):
    job = load_job(write(tmp_path, GOOD), root=tmp_path)
    assert job.name == "t" and job.seed == 3
    assert job.catalog == tmp_path / "catalogs" / "t.zarr"
    (spec,) = job.stages
    assert spec.params.n_scans == 10 and spec.params.fail == [1]
    assert spec.output == "results/sq"


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('stage = "cdiplatform.testing.stages:Squares"', 'stage = "no_such_stage"', "unknown stage 'no_such_stage'"),
        ("n_scans = 10", 'n_scans = "10"', "params.n_scans: expected int, got str"),
        ("n_scans = 10", "n_scanz = 10", "unknown parameter 'n_scanz'"),
        ("fail = [1]", 'fail = ["a"]', "params.fail: expected list[int]"),
        ('output = "results/sq"', "", "missing the key 'output'"),
        ('output = "results/sq"', 'output = "resultz/sq"', "not in the catalog layout"),
        ('name = "t"', "", "[job] misses the key 'name'"),
        ("seed = 3", "seed = -1", "job.seed must be a non-negative integer"),
        ("[job]", "[jobb]", "unknown table 'jobb'"),
        ('output = "results/sq"', 'output = "results/sq"\ninputs = { collection = "collections/x" }',
         "unknown input 'collection'"),
    ],
)
def test_bad_jobs_name_the_file_and_key(tmp_path, old, new, message):
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(JobError) as info:
        load_job(path, root=tmp_path)
    text = str(info.value)
    assert str(path) in text
    assert message in text
    assert "\n" not in text


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(JobError, match="not valid TOML"):
        load_job(write(tmp_path, "[job\nname="))
    with pytest.raises(JobError, match="cannot read the job file"):
        load_job(tmp_path / "nope.toml")


@pytest.mark.parametrize("name", ["evaluate_cdi_nn_2d", "evaluate_cdi_nn_3d"])
def test_the_evaluation_jobs_are_valid(tmp_path, repo_root, name):
    """The jobs that evaluate the shipped networks parse, and a dry run plans their first stage (no full run)."""
    from cdiplatform.pipeline.runner import plan_job

    job = load_job(repo_root / "jobs" / f"{name}.toml", root=repo_root)
    stages = [s.stage.name for s in job.stages]
    assert stages[-3:] == ["mean_object", "benchmark", "report"], stages
    infer = next(s for s in job.stages if s.stage.name == "infer")
    model = infer.inputs["model"]
    assert model.catalog == repo_root / "catalogs" / "examples.zarr" and model.node.startswith("models/cdi_nn_")
    bench = next(s for s in job.stages if s.stage.name == "benchmark")
    assert [r.node for r in bench.inputs["methods"]] == ["results/nn", "results/mean_object"]
    assert bench.params.reference == ""
    if name == "evaluate_cdi_nn_2d":  # the 3D job's first stage needs LAMMPS even to be planned
        reports = plan_job(job, catalog=tmp_path / "never.zarr")
        assert [r.n_scans for r in reports[::2]][:2] == [1000, 4096]
        assert [r.state.split(" ")[0] for r in reports] == ["new", "waiting", "new", "waiting", "waiting", "waiting"]
        assert not (tmp_path / "never.zarr").exists()
    overridden = load_job(repo_root / "jobs" / f"{name}.toml", root=repo_root,
                          overrides={"model": "elsewhere.zarr:models/m"})
    assert next(s for s in overridden.stages if s.stage.name == "infer").inputs["model"].node == "models/m"
