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
