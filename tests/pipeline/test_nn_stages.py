"""Training-data assembly, training and inference as stages, on a real LocalCluster."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cdiplatform import open_catalog
from cdiplatform.catalog import read_model
from cdiplatform.pipeline.cluster import connect
from cdiplatform.pipeline.job import JobError, load_job
from cdiplatform.pipeline.runner import run_job

JOB = """
[job]
name = "nn"
seed = 4

[[stage]]
stage = "simulate_2d"
output = "collections/c2d"
[stage.params]
n_scans = {n}
chunk = 128

[[stage]]
stage = "assemble_training"
inputs = {{ collection = "collections/c2d" }}
output = "training/c2d"
[stage.params]
chunk = 128

[[stage]]
stage = "train"
inputs = {{ training = "training/c2d" }}
output = "models/m"
[stage.params]
recipe = "cdi_nn_2d"
epochs = [{epochs}]
widths = [4, 8, 16]
# the options the shipped 3D model trains with: they must resume exactly too
batch_norm = true
activation = "leaky_relu"
training = {{ batch_size = 32, augment = "grid", lr_schedule = "cosine", twin_invariant = true }}

[[stage]]
stage = "infer"
inputs = {{ collection = "collections/c2d", model = "{catalog}:models/m" }}
select = "100:164"
output = "results/nn"
[stage.params]
chunk = 32
"""


@pytest.fixture(scope="module")
def client():
    with connect("local", workers=2, dashboard=False) as handle:
        yield handle.client


def make_job(tmp_path, *, n=256, epochs=2, name="job.toml"):
    catalog = tmp_path / "c.zarr"
    path = tmp_path / name
    path.write_text(JOB.format(n=n, epochs=epochs, catalog=catalog))
    return load_job(path, root=tmp_path), catalog


def test_assemble_train_infer(client, tmp_path):
    job, catalog = make_job(tmp_path)
    reports = run_job(job, client=client, catalog=catalog)
    assert [r.ok for r in reports] == [256, 256, 1, 64] and not any(r.failed for r in reports)
    cat = open_catalog(catalog)

    training = cat.open("training/c2d").load()
    splits = training.attrs["splits"]
    assert splits["train"][0] == 0 and splits["test"][1] == 256
    assert set(training["source_scan"].values) == set(range(256)), "a scan was lost or duplicated"
    assert float(training["inputs"].max()) == pytest.approx(1.0)
    source = cat.open("collections/c2d").load()
    i = 7
    np.testing.assert_allclose(training["inputs"].values[i],
                               np.sqrt(source["intensity"].values[training["source_scan"].values[i]])
                               / np.sqrt(source["intensity"].values[training["source_scan"].values[i]]).max(),
                               rtol=1e-6)

    weights, attrs = read_model(cat, "models/m")
    assert attrs["run"]["complete"] and attrs["architecture"] == "cdi_nn_2d"
    assert len(attrs["training_history"]["train_loss"]) == 2
    assert attrs["training_set"]["node"].endswith("training/c2d")
    assert attrs["config"]["widths"] == [4, 8, 16] and attrs["config"]["oversampling"]
    assert attrs["config"]["batch_norm"] and attrs["config"]["training"]["augment"] == "grid"
    assert attrs["config"]["training"]["twin_invariant"]
    assert all(isinstance(v, np.ndarray) for v in weights.values()) and weights
    # one rule for every stage: the weights' seed is drawn from the job's seed and the output node, and
    # the provenance says so (the stage had a seed parameter of its own, which the provenance did not show)
    from cdiplatform.pipeline.randomness import stage_seed_sequence, stream_key
    from cdiplatform.pipeline.stages.train import Train

    prov = cat.provenance("models/m")
    assert prov["seed"] == 4 and prov["random"]["seed"] == 4 and prov["random"]["stream"] == "models/m"
    assert "weight initialization" in prov["random"]["draws"]
    assert attrs["config"]["training"]["seed"] == Train(seed=stage_seed_sequence(4, stream_key("models/m"))).seed()
    assert "seed" not in prov["stage"]["params"] and "seed" not in cat.provenance("training/c2d")["stage"]["params"]

    result = cat.open("results/nn").load()
    assert result.attrs["method"] == "nn"
    assert result["scan"].values.tolist() == list(range(100, 164)), "results must keep the collection's scan ids"
    assert np.isfinite(result["amplitude"].values).all() and float(result["amplitude"].max()) <= 1.0 + 1e-6


def test_a_wrong_model_is_refused_clearly(client, tmp_path):
    job, catalog = make_job(tmp_path)
    run_job(job, client=client, catalog=catalog)
    bad = tmp_path / "bad.toml"
    bad.write_text(job.path.read_text().replace(f"{catalog}:models/m", f"{catalog}:models/none"))
    with pytest.raises(JobError, match="models/none"):
        run_job(load_job(bad, root=tmp_path), client=client, catalog=catalog)


def test_training_killed_halfway_resumes_to_the_same_weights_and_history(client, tmp_path):
    # every part runs on workers of one torch thread each: results are equal only at equal thread counts
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    killed_dir.mkdir(), clean_dir.mkdir()
    job, catalog = make_job(killed_dir, n=768, epochs=4)
    proc = subprocess.Popen([sys.executable, "-m", "cdiplatform.cli.main", "run", str(job.path), "--catalog",
                             str(catalog), "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    epochs_done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            epochs_done = open_catalog(catalog).attrs("models/m").get("epochs_done", 0)
        except Exception:  # noqa: BLE001 - not written yet
            continue
        if epochs_done >= 1:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    attrs = open_catalog(catalog).attrs("models/m")
    assert not attrs["run"]["complete"] and 1 <= attrs["epochs_done"] < 4, attrs.get("epochs_done")

    (_, _, resumed, _) = run_job(job, client=client, catalog=catalog)
    assert resumed.state == "resume" and resumed.ok == 1
    clean_job, clean_catalog = make_job(clean_dir, n=768, epochs=4)
    run_job(clean_job, client=client, catalog=clean_catalog)

    w1, a1 = read_model(open_catalog(catalog), "models/m")
    w2, a2 = read_model(open_catalog(clean_catalog), "models/m")
    assert a1["weights_hash"] == a2["weights_hash"]
    assert a1["training_history"] == a2["training_history"]
    for key in w2:
        np.testing.assert_array_equal(w1[key], w2[key])


@pytest.mark.parametrize(
    "recipe, table, want",
    [
        ("cdi_nn_2d", {}, "bce"),
        ("cdi_nn_2d", {"training": {"supervised_loss": "mae"}}, "mae"),
        ("cdi_nn_3d_reduced", {}, "mae"),
        ("cdi_nn_3d_reduced", {"training": {"supervised_loss": "bce"}}, "bce"),
    ],
)
def test_train_params_are_the_model_config(recipe, table, want):
    from cdiplatform.nn import RECIPES
    from cdiplatform.pipeline.params import build_params
    from cdiplatform.pipeline.stages.train import Train

    epochs = [2] if recipe == "cdi_nn_2d" else [1, 2, 3, 4]
    params = build_params(Train, {"recipe": recipe, "epochs": epochs, **table}, where="test")
    config = Train.config(params, seed=5)
    assert config.training.supervised_loss == want
    assert [p.epochs for p in config.training.schedule] == epochs and config.training.seed == 5
    assert config.widths == RECIPES[recipe].widths


def test_bad_train_params_are_refused_in_one_line():
    from cdiplatform.pipeline.params import build_params
    from cdiplatform.pipeline.stages.train import Train

    with pytest.raises(ValueError, match="supervised_loss must be 'bce' or 'mae', got 'mse'"):
        build_params(Train, {"training": {"supervised_loss": "mse"}}, where="test")
    with pytest.raises(ValueError, match="has 4 schedule phase"):
        Train.config(build_params(Train, {"recipe": "cdi_nn_3d", "epochs": [2]}, where="test"))
    with pytest.raises(ValueError, match="comes from the job's seed"):
        Train().validate(build_params(Train, {"training": {"seed": 3}}, where="test"),
                         {"training": _Attrs(ndim=2)})


class _Attrs:
    def __init__(self, **attrs):
        self.attrs = attrs
