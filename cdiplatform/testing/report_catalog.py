"""A small synthetic catalog in the layouts the report reads, written with the catalog API.

:func:`write_report_catalog` writes a collection with its truth, two result
nodes (``nn`` without a history, ``er_hio`` with a time-to-accuracy history
and one failed scan), a post-processing node made from ``er_hio``, and a
benchmark node comparing the two, as the pipeline's stages write them. Scans
are simulated (integer identities) or measured (``"<beamtime>/<number>"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from cdiplatform.catalog import STATUS_FAILED, STATUS_MEANINGS, STATUS_OK, Catalog, open_catalog

__all__ = ["FAILED", "write_report_catalog"]

#: (method, scan position) of the scan that failed, and why
FAILED = ("er_hio", 1, "phase retrieval failed: chi is NaN after 40 iterations")
_DIMS = {2: ("y", "x"), 3: ("z", "y", "x")}


def _provenance(stage: str, node: str, inputs: dict[str, str], seed: int = 7) -> dict[str, Any]:
    return {
        "software": {"name": "cdiplatform", "version": "0.1.0", "commit": "0123456789abcdef0123456789abcdef01234567",
                     "dirty": False, "commit_source": "git", "python": "3.11.7"},
        "job": {"name": "synthetic", "path": "jobs/synthetic.toml", "sha256": "ab" * 32},
        "run_id": f"synthetic-{stage}-0123456789",
        "stage": {"name": stage, "params": {"chunk": 2}, "params_hash": "cd" * 32},
        "inputs": {k: {"node": v, "content_hash": "ef" * 32, "identity": ["ef" * 32, None]} for k, v in inputs.items()},
        "seed": seed, "cluster": "local tcp://127.0.0.1:1",
        "started": "2026-11-22T06:25:20+00:00", "finished": "2026-11-22T06:25:22+00:00",
    }


def _bookkeeping(n: int, failed: dict[int, str], rng: np.random.Generator) -> dict[str, tuple]:
    status = np.full(n, STATUS_OK, np.uint8)
    reason = np.full(n, "", dtype=object)
    for i, why in failed.items():
        status[i], reason[i] = STATUS_FAILED, why
    return {
        "status": (("scan",), status, {"flag_values": [0, 1, 2], "flag_meanings": STATUS_MEANINGS}),
        "reason": (("scan",), reason),
        "done": (("scan",), np.ones(n, bool)),
        "seconds": (("scan",), rng.uniform(0.5, 5.0, n).astype(np.float32), {"units": "s"}),
        "digest": (("scan",), rng.integers(0, 2**63, n).astype("<u8")),
    }


def _crystal(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid of about a quarter of the grid, off-centre by a voxel or two, with a smooth phase."""
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    radii = rng.uniform(0.18, 0.28, len(shape)) * np.array(shape)
    shift = rng.integers(-1, 2, len(shape))
    r2 = sum(((g - s) / r) ** 2 for g, s, r in zip(grids, shift, radii))
    amplitude = np.clip(1.2 * (1 - r2), 0, 1).astype(np.float32)
    k = rng.normal(0, 0.15, len(shape))
    phase = np.where(amplitude > 0, sum(ki * g for ki, g in zip(k, grids)) + 0.02 * grids[0] ** 2, 0.0)
    return amplitude, np.angle(np.exp(1j * phase)).astype(np.float32)


def _resolution(kind: str, n_scans: int, size: int, failed: dict[int, str],
                rng: np.random.Generator) -> dict[str, tuple]:
    """PRTF or FSC variables as ``reconstruct`` writes them: curves falling past a random cut-off,
    NaN-padded past each scan's last shell."""
    shells = max(2, size // 2)
    q = np.full((n_scans, shells), np.nan)
    curve = np.full((n_scans, shells), np.nan)
    threshold = np.full((n_scans, shells), np.nan)
    resolution = np.full((n_scans, 3), np.nan)
    shell_resolution = np.full(n_scans, np.nan)
    for i in range(n_scans):
        if i in failed:
            continue
        n = shells - i % 2  # the shells a scan has depend on its q step
        q[i, :n] = (np.arange(n) + 0.5) * 0.003
        cut = rng.uniform(0.4, 0.8) * q[i, n - 1]
        curve[i, :n] = 1.0 / (1.0 + (q[i, :n] / cut) ** 4) + rng.normal(0, 0.02, n)
        threshold[i, :n] = np.exp(-1.0) if kind == "prtf" else 0.2071 + 0.4 / np.sqrt(np.arange(1, n + 1))
        resolution[i] = np.pi / (10 * cut * rng.uniform(0.9, 1.1, 3))
        shell_resolution[i] = np.pi / (10 * cut)
    crossed = np.isfinite(resolution)
    out = {kind: (("scan", "shell"), curve), f"{kind}_q": (("scan", "shell"), q, {"units": "1/angstrom"}),
           f"{kind}_resolution": (("scan", "axis"), resolution, {"units": "nm"}),
           f"{kind}_resolution_shell": (("scan",), shell_resolution, {"units": "nm"}),
           f"{kind}_crossed": (("scan", "axis"), crossed), f"{kind}_crossed_shell": (("scan",), crossed[:, 0])}
    if kind == "fsc":
        out["fsc_threshold"] = (("scan", "shell"), threshold)
    return out


def write_report_catalog(path: str | Path, *, measured: bool = False, ndim: int = 3, n_scans: int = 3,
                         size: int = 16, records: int = 12, gold: bool = False, seed: int = 0) -> Catalog:
    """Write the synthetic catalog at ``path`` and return it (opened for appending).

    Nodes: ``collections/sim`` (truth ``amplitude``, ``phase``), ``results/nn``
    and ``results/er_hio`` (the second with ``history_seconds``,
    ``history_chi`` on ``(scan, record)``, NaN-padded, scan ``FAILED[1]``
    failed, and in 3D the PRTF variables of ``reconstruct``),
    ``results/postprocess_er_hio`` (amplitude, phase, displacement, strain,
    support on ``(scan, z, y, x)`` in nm, and the FSC variables carried from
    a reconstruction; 3D only) and
    ``benchmarks/quick`` (``scan x method``; errors NaN when ``measured``:
    measured scans have no truth).

    Parameters
    ----------
    measured : bool
        Text identities ``"34idc-2020/<54 + i>"`` and no truth, else integers ``0 .. n_scans-1``.
    gold : bool
        Give the collection the per-scan variables of ``simulate_gold`` (``strained``
        on even scans, ``phase_range``, ``phase_residual``, ``residual_strain``).
    ndim : {2, 3}
    n_scans, size, records : int
        Scans, grid size per axis, records of the ER/HIO history.
    seed : int
        Of the generator the values come from.
    """
    if ndim not in _DIMS:
        raise ValueError(f"ndim must be 2 or 3, not {ndim}")
    if n_scans <= FAILED[1]:
        raise ValueError(f"n_scans must be at least {FAILED[1] + 1} (scan {FAILED[1]} of er_hio fails), not {n_scans}")
    rng = np.random.default_rng(seed)
    cat = open_catalog(path, mode="a")
    dims = _DIMS[ndim]
    shape = (size,) * ndim
    scans = (np.array([f"34idc-2020/{54 + i}" for i in range(n_scans)], dtype=object) if measured
             else np.arange(n_scans, dtype=np.int64))
    coords = {"scan": scans, "kind": ("scan", np.array(["measured" if measured else "simulated"] * n_scans, object)),
              "sample": ("scan", np.array([f"crystal {i}" for i in range(n_scans)], object)),
              "source": ("scan", np.array(["write_report_catalog"] * n_scans, object))}
    truth = [_crystal(shape, rng) for _ in range(n_scans)]
    amplitude = np.stack([a for a, _ in truth])
    phase = np.stack([p for _, p in truth])
    intensity = np.abs(np.fft.fftn(amplitude * np.exp(1j * phase), axes=tuple(range(1, ndim + 1)))) ** 2
    data = {"intensity": (("scan", *dims), intensity.astype(np.float32))}
    if not measured:
        data.update({"amplitude": (("scan", *dims), amplitude), "phase": (("scan", *dims), phase)})
    if gold:
        coords["strained"] = ("scan", np.arange(n_scans) % 2 == 0)
        data.update({"phase_range": (("scan",), rng.uniform(1, 4, n_scans)),
                     "phase_residual": (("scan",), rng.uniform(0.05, 0.3, n_scans)),
                     "residual_strain": (("scan", "i", "j"), rng.normal(0, 1e-4, (n_scans, 3, 3)))})
    cat.write("collections/sim", xr.Dataset(data, coords=coords), attrs={"title": "synthetic crystals"})
    collection = f"{Path(path).resolve()}:collections/sim"

    methods = {}
    for method, noise in (("nn", 0.08), ("er_hio", 0.01)):
        failed = {FAILED[1]: FAILED[2]} if method == FAILED[0] else {}
        amp = np.clip(amplitude + rng.normal(0, noise, amplitude.shape), 0, None).astype(np.float32)
        pha = (phase + rng.normal(0, noise, phase.shape)).astype(np.float32)
        chi = rng.uniform(0.02, 0.08, n_scans) if method == "nn" else rng.uniform(1e-4, 1e-3, n_scans)
        for i in failed:
            amp[i], pha[i], chi[i] = np.nan, np.nan, np.nan
        variables: dict[str, Any] = {
            "amplitude": (("scan", *dims), amp), "phase": (("scan", *dims), pha),
            "support": (("scan", *dims), (amp > 0.1).astype(np.uint8)),
            "chi": (("scan",), chi), **_bookkeeping(n_scans, failed, rng),
        }
        if method == "er_hio":
            history_chi = np.full((n_scans, records), np.nan)
            history_seconds = np.full((n_scans, records), np.nan)
            for i in range(n_scans):
                n = records - i  # NaN-padded: scans record different numbers of points
                history_seconds[i, :n] = np.cumsum(rng.uniform(0.05, 0.2, n))
                history_chi[i, :n] = 0.5 * np.geomspace(1, 1e-3, n)
            variables["history_seconds"] = (("scan", "record"), history_seconds, {"units": "s"})
            variables["history_chi"] = (("scan", "record"), history_chi)
        extra = {}
        if method == "er_hio":
            extra["record"] = ("record", np.arange(0, 20 * records, 20), {"long_name": "iteration"})
            if ndim == 3:
                variables.update(_resolution("prtf", n_scans, size, failed, rng))
                extra["axis"] = ("axis", np.array(["z", "y", "x"], dtype=object))
        node = f"results/{method}"
        cat.write(node, xr.Dataset(variables, coords={"scan": scans, **extra}),
                  attrs={"method": method, "collection": collection,
                         "provenance": _provenance("reconstruct" if method == "er_hio" else "infer", node,
                                                   {"collection": collection})})
        methods[method] = f"{Path(path).resolve()}:{node}"

    if ndim == 3:
        n = size + 4
        grid = {d: (d, (np.arange(n) - n // 2) * 5.0, {"units": "nm"}) for d in dims}
        support = np.zeros((n_scans, n, n, n), bool)
        support[:, 4:-4, 5:-5, 3:-3] = True
        strain = np.where(support, rng.normal(0, 2e-4, support.shape), 0.0).astype(np.float32)
        pp = {"amplitude": (("scan", *dims), support.astype(np.float32)),
              "phase": (("scan", *dims), np.zeros(support.shape, np.float32)),
              "displacement": (("scan", *dims), np.zeros(support.shape, np.float32), {"units": "nm"}),
              "strain": (("scan", *dims), strain), "support": (("scan", *dims), support),
              **_resolution("fsc", n_scans, size, {FAILED[1]: ""}, rng),
              **_bookkeeping(n_scans, {FAILED[1]: "failed upstream in results/er_hio: " + FAILED[2]}, rng)}
        node = "results/postprocess_er_hio"
        axis = {"axis": ("axis", np.array(["z", "y", "x"], dtype=object))}
        cat.write(node, xr.Dataset(pp, coords={"scan": scans, **grid, **axis}),
                  attrs={"method": "postprocess", "collection": methods["er_hio"], "source": methods["er_hio"],
                         "frame": "laboratory", "voxel_nm": 5.0,
                         "provenance": _provenance("postprocess", node, {"result": methods["er_hio"]})})

    names = ["nn", "er_hio"]
    shape2 = (n_scans, len(names))
    chi_tab = np.stack([cat.open(f"results/{m}", chunks=None)["chi"].values for m in names], axis=1)
    errors = np.full(shape2, np.nan) if measured else rng.uniform(0.001, 0.05, shape2)
    phase_errors = np.full(shape2, np.nan) if measured else rng.uniform(0.01, 0.4, shape2)
    failed_at = (FAILED[1], names.index(FAILED[0]))
    errors[failed_at] = phase_errors[failed_at] = np.nan
    flags = np.array([["good", "twin"] if i % 2 == 0 else ["twin", "failed"] for i in range(n_scans)], object)
    reasons = np.where(flags == "failed", FAILED[2], "").astype(object)
    reasons[flags == "twin"] = "the comparison took the twin"
    bench = xr.Dataset(
        {"chi": (("scan", "method"), chi_tab), "llk": (("scan", "method"), rng.uniform(0.1, 1, shape2)),
         "amplitude_error": (("scan", "method"), errors), "phase_error": (("scan", "method"), phase_errors),
         "method_seconds": (("scan", "method"), np.array([[0.05, 3.0]] * n_scans) * rng.uniform(0.8, 1.2, shape2)),
         "iterations": (("scan", "method"), np.array([[0, 200]] * n_scans, np.int32)),
         "agreement_iou": (("scan", "method"), rng.uniform(0.6, 1, shape2)),
         "agreement_phase_rms": (("scan", "method"), rng.uniform(0, 0.3, shape2)),
         "flag": (("scan", "method"), flags), "flag_reason": (("scan", "method"), reasons)},
        coords={"scan": scans, "method": np.array(names, object)})
    cat.write("benchmarks/quick", bench,
              attrs={"collection": collection, "methods": methods, "reference": "er_hio",
                     "provenance": _provenance("benchmark", "benchmarks/quick", {"collection": collection, **methods})})
    return cat
