"""Every chunk stage passes the conformance suite (cdiplatform.testing.conformance) on the real runner."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cdiplatform import open_catalog
from cdiplatform.testing.conformance import StageTests

EXAMPLES = "catalogs/examples.zarr"

SIMULATE = """
[[stage]]
stage = "simulate_2d"
output = "collections/c"
[stage.params]
n_scans = 10
size = 32
chunk = 5
"""


class TestSimulate2D(StageTests):
    stage_table = """
        [[stage]]
        stage = "simulate_2d"
        output = "collections/c"
        [stage.params]
        n_scans = 10
        size = 16
        chunk = {chunk}
    """
    output = "collections/c"
    why_no_spoil = "it reads nothing; every parameter that could fail a scan fails them all"


class TestPad(StageTests):
    upstream = SIMULATE
    stage_table = """
        [[stage]]
        stage = "pad"
        inputs = { collection = "collections/c" }
        output = "collections/p"
        [stage.params]
        chunk = {chunk}
    """
    output = "collections/p"
    spoil = ("collections/c", "amplitude")


class TestReconstruct(StageTests):
    upstream = SIMULATE.replace("size = 32", "size = 16") + """
[[stage]]
stage = "pad"
inputs = { collection = "collections/c" }
output = "collections/p"
"""
    stage_table = """
        [[stage]]
        stage = "reconstruct"
        inputs = { collection = "collections/p" }
        select = "0:6"
        output = "results/r"
        [stage.params]
        algorithm = "10*ER+20*HIO+5*ER"
        average_last = 0
        n_starts = 2
        chunk = {chunk}
    """
    output = "results/r"
    spoil = ("collections/p", "intensity")


class TestInfer(StageTests):
    upstream = SIMULATE
    output = "results/nn"
    spoil = ("collections/c", "intensity")
    # torch's CPU convolutions choose their kernels by batch size: a scan batched with other scans
    # agrees to float32 rounding, not bit for bit (a resumed chunk is batched as before: bit-identical)
    atol = 1e-5

    @property
    def stage_table(self):  # the model is an input like any other; its path is absolute here
        from tests.conftest import REPO_ROOT

        return f"""
        [[stage]]
        stage = "infer"
        inputs = {{ collection = "collections/c", model = "{REPO_ROOT / EXAMPLES}:models/cdi_nn_2d" }}
        output = "results/nn"
        [stage.params]
        chunk = {{chunk}}
        device = "cpu"
        """


class TestMeanObject(StageTests):
    upstream = SIMULATE + """
[[stage]]
stage = "simulate_2d"
output = "collections/ref"
[stage.params]
n_scans = 7
size = 32
"""
    stage_table = """
        [[stage]]
        stage = "mean_object"
        inputs = { collection = "collections/c", reference = "collections/ref" }
        output = "results/mean"
        [stage.params]
        chunk = {chunk}
    """
    output = "results/mean"
    spoil = ("collections/c", "intensity")


class TestAssembleTraining(StageTests):
    upstream = SIMULATE
    stage_table = """
        [[stage]]
        stage = "assemble_training"
        inputs = { collection = "collections/c" }
        output = "training/t"
        [stage.params]
        chunk = {chunk}
    """
    output = "training/t"
    spoil = ("collections/c", "intensity")


def _cube(n: int, rng: np.random.Generator) -> np.ndarray:
    """A Bragg-peak-like 3D intensity: the far field of a small random blob, 16^3."""
    from cdiplatform.physics import diffraction_intensity

    obj = np.zeros((n, 16, 16, 16), complex)
    obj[:, 6:10, 5:11, 6:10] = rng.random((n, 4, 6, 4)) + 0.5
    return (1e4 * diffraction_intensity(obj, ndim=3)).astype(np.float32)


class TestNetworkInput(StageTests):
    stage_table = """
        [[stage]]
        stage = "network_input"
        inputs = { collection = "collections/m" }
        output = "collections/m8"
        [stage.params]
        size = 8
        target_oversampling = [1.5]
        chunk = {chunk}
    """
    output = "collections/m8"
    spoil = ("collections/m", "intensity")

    def prepare_catalog(self, catalog):
        n = 7
        ids = np.array([f"bt/{i}" for i in range(n)], dtype=object)
        ds = xr.Dataset(
            {"intensity": (("scan", "z", "y", "x"), _cube(n, np.random.default_rng(3))),
             "status": ("scan", np.ones(n, np.uint8)), "reason": ("scan", np.full(n, "", dtype=object))},
            coords={"scan": ids, "kind": ("scan", ["measured"] * n), "sample": ("scan", ids),
                    "source": ("scan", ids)})
        open_catalog(catalog, mode="a").write("collections/m", ds, attrs={})


class TestPrepare(StageTests):
    stage_table = """
        [[stage]]
        stage = "prepare"
        inputs = { raw = "raw/bt/*" }
        output = "collections/bt"
        [stage.params]
        size = 8
        threshold = 0.0
    """
    output = "collections/bt"
    chunks = (1, 1)  # prepare writes one scan per chunk

    def prepare_catalog(self, catalog):
        rng = np.random.default_rng(4)
        cat = open_catalog(catalog, mode="a")
        for i, cube in enumerate(_cube(5, rng)):
            cat.write(f"raw/bt/{i + 1}", _raw(np.rint(cube).astype(np.int32), scan=i + 1), attrs={})

    def force_failure(self, catalog):
        cat = open_catalog(catalog, mode="a")
        cat.write("raw/bt/2", _raw(np.zeros((16, 16, 16), np.int32), scan=2), attrs={}, overwrite=True)
        return "bt/2", "no signal"


def _raw(frames: np.ndarray, *, scan: int) -> xr.Dataset:
    """A raw scan in the catalog's layout, with the 34-ID-C geometry of scan 54."""
    from cdiplatform.catalog.raw import raw_scan_dataset
    from cdiplatform.ingest import Detector, RawScan, Region

    n = len(frames)
    raw = RawScan(frames=frames, columns={"th": np.linspace(0, 0.075, n)}, scan=str(scan), energy_kev=9.0,
                  delta_deg=32.174, gamma_deg=12.6346, camdist_mm=500.0, rocking_motor="th",
                  rocking_mnemonic="th", rocking_start=0.0, rocking_stop=0.075, rocking_step=0.005,
                  count_time_s=0.25, detector=Detector(name="timepix", pixel_size=(55e-6, 55e-6),
                                                       sensor_shape=(512, 512), orientation=("y-", "x+")),
                  region=Region(0, 16, 0, 16), dark=None, flat=None)
    return raw_scan_dataset(raw, beamtime="bt")


@pytest.mark.lammps
class TestSimulateGold(StageTests):
    stage_table = """
        [[stage]]
        stage = "simulate_gold"
        output = "collections/gold"
        [stage.params]
        n_crystals = 3
        block_cells = 6
        grid = 16
        padding = 3.0
    """
    output = "collections/gold"
    chunks = (2, 2)  # the stage's chunk is one pair (strained crystal, its control)
    why_no_spoil = "it reads nothing; a crystal fails only when LAMMPS does"

    @pytest.fixture(autouse=True)
    def _lammps(self, require):
        from cdiplatform.simulate.gold.lammps_env import LammpsUnavailable, load_lammps

        try:
            load_lammps()
        except LammpsUnavailable as exc:
            require(False, f"LAMMPS is not usable: {exc}")
