"""The committed, read-only catalogs/examples.zarr opens with plain xarray and holds what the docs say."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cdiplatform import open_catalog
from cdiplatform.catalog import load_model_arrays

EXAMPLES = Path(__file__).resolve().parents[2] / "catalogs" / "examples.zarr"


def test_plain_xarray_opens_the_tree():
    tree = xr.open_datatree(EXAMPLES, engine="zarr", consolidated=False)
    raw = tree["raw/34idc-2020/54"].dataset
    assert raw["frames"].shape == (64, 128, 128)
    assert raw.attrs["energy_kev"] == 9.0 and raw.attrs["delta_deg"] == 32.174
    assert "Monitor" in raw["spec_column"].values.tolist()
    assert raw.attrs["license"].startswith("BSD 2-Clause")
    assert (EXAMPLES.parent / "examples.LICENSE").is_file()
    full = xr.open_zarr(EXAMPLES, group="collections/scan54_64", consolidated=False)
    assert full["intensity"].shape == (1, 64, 64, 64) and full["kind"].values.tolist() == ["measured"]
    small = xr.open_zarr(EXAMPLES, group="collections/scan54_32", consolidated=False)
    assert small["intensity"].shape == (1, 32, 32, 32)


def test_every_node_has_provenance():
    cat = open_catalog(EXAMPLES)
    assert cat.nodes()
    for node in cat.nodes():
        prov = cat.provenance(node)
        assert prov["software"]["name"] == "cdiplatform", node
        assert prov.get("started"), node


def test_the_prepared_scan_is_centred_on_its_bragg_peak():
    full = xr.open_zarr(EXAMPLES, group="collections/scan54_64", consolidated=False).load()
    cube = full["intensity"].values[0]
    assert cube[32, 32, 32] > 0.9 * cube.max()


@pytest.mark.parametrize("node,grid", [("models/cdi_nn_2d", (32, 32)), ("models/cdi_nn_3d_reduced", (32, 32, 32))])
def test_the_shipped_models_load_without_pickle(node, grid):
    import torch

    from cdiplatform.nn import load_model

    weights, config, digest = load_model_arrays(f"{EXAMPLES}:{node}")
    model = load_model(weights, config, expected_hash=digest).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, 1, *grid))
    assert all(np.isfinite(o.numpy()).all() for o in out)
    attrs = open_catalog(EXAMPLES).attrs(node)
    assert attrs["run"]["complete"] and attrs["training_history"]["val_loss"]
