"""Our post-processing beside cohere's (``beamline_postprocess`` with a ``config_disp``) on scan 54.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_postprocess_peer.py \\
        --peer-venv /tmp/peer-venv --work /tmp/cohere-postprocess

1. Phases the 64^3 cube of scan 54 (``catalogs/examples.zarr:collections/scan54_64``) with our
   engine: 4 starts of ``2*(20*ER+130*HIO)+20*ER`` (cohere's scan-54 recipe, shorter), one per seed;
   and each half of a binomial split of the counts once (for the FSC).
2. Our post-processing: :func:`cdiplatform.postprocess.postprocess_scans` in the laboratory frame,
   PRTF of the 4 aligned starts, FSC of the halves.
3. cohere on the same reconstruction, in its own environment (``/tmp/peer-venv``, see
   ``../shared/peers/cohere-core.md``): its workspace laid out from ``../shared/data``,
   ``beamline_preprocess`` (for its ``preprocess.xlsx``: the peak pixel and frame it takes the
   geometry at), our best object written as its ``results_phasing/image.npy``, then
   ``beamline_postprocess`` (``beamline_visualization`` is now only a stub that says so).
   cohere's far field is the *inverse* FFT: the array it reconstructs is the conjugate of ours, in
   its axis order ``(det_x, det_y, frame)``: we give it ``conj(obj).transpose(2, 1, 0)``.
4. Reads cohere's ``.vts``/``.vti`` back with vtk and prints the comparison (voxel vectors, the
   crystal's extent, principal axes and volume), writes ``docs/figures/postprocess_cohere_scan54.png``
   and ``docs/figures/postprocess_resolution_scan54.png``, and ``--json`` the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "aps34idc-au111-scan54"

CONFIG_DISP = """results_dir = "{ws}"
crop_type = "tight"
crop_thresh = 0.5
crop_margin = 10
rampups = 1
complex_mode = "AmpPhase"
interpolation_mode = "AmpPhase"
interpolation_resolution = "min_deconv_res"
determine_resolution_type = "deconv"
resolution_deconv_contrast = 0.25
write_recip = True
unwrap = True
Bragg_displacement = "Q"
compute_strain = True
"""


def _load_scan54():
    import xarray as xr

    from cdiplatform.ingest.geometry import q_steps

    store = ROOT / "catalogs" / "examples.zarr"
    col = xr.open_zarr(store, group="collections/scan54_64", consolidated=False)
    raw = xr.open_zarr(store, group="raw/34idc-2020/54", consolidated=False).attrs
    centre = col.centre_raw.values[0]
    region = raw["region"]  # row_start, row_stop, col_start, col_stop
    pixel = (region[0] + int(centre[1]), region[2] + int(centre[2]))
    geo = q_steps(energy_kev=raw["energy_kev"], delta_deg=raw["delta_deg"], gamma_deg=raw["gamma_deg"],
                  rocking_step_deg=raw["rocking_step_deg"], camdist_mm=raw["camdist_mm"],
                  pixel_size_m=raw["pixel_size_m"], sensor_shape=raw["sensor_shape"], pixel=pixel)
    return col.intensity.values[0].astype(np.float64), col.mask.values[0], geo, pixel


def _phase(intensity, mask, seeds, algorithm):
    from cdiplatform.phasing import phase_retrieval, recipe

    settings = recipe("cohere_scan54", algorithm=algorithm)
    objs, sups, errs = [], [], []
    for seed in seeds:
        r = phase_retrieval(np.sqrt(intensity)[None], ndim=3, settings=settings, measured=~mask[None], seed=seed)
        objs.append(r.obj[0])
        sups.append(r.support[0])
        errs.append(float(r.error[0]))
    return np.array(objs), np.array(sups), np.array(errs)


def _shape_stats(points: np.ndarray, voxel_volume: float) -> dict:
    """Centroid-free shape figures of a point cloud (lab nm): extents, principal axes, volume."""
    c = points.mean(axis=0)
    w, v = np.linalg.eigh(np.cov((points - c).T))
    v = v * np.sign(v[np.argmax(np.abs(v), axis=0), range(3)])  # each axis' largest component positive
    return {"extent_xyz_nm": (points.max(axis=0) - points.min(axis=0)).tolist(),
            "principal_sd_nm": np.sqrt(w[::-1]).tolist(), "principal_axes": v[:, ::-1].T.tolist(),
            "volume_nm3": float(points.shape[0] * voxel_volume), "voxels": int(points.shape[0])}


def _read_cohere(viz: Path) -> dict:
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    r = vtk.vtkXMLStructuredGridReader()
    r.SetFileName(str(viz / "direct_space_images_AmpPhase.vts"))
    r.Update()
    g = r.GetOutput()
    dims = [0, 0, 0]
    g.GetDimensions(dims)
    pts = vtk_to_numpy(g.GetPoints().GetData()).reshape(dims[2], dims[1], dims[0], 3)
    arrays = {g.GetPointData().GetArrayName(i): vtk_to_numpy(g.GetPointData().GetArray(i)).reshape(
        dims[2], dims[1], dims[0]) for i in range(g.GetPointData().GetNumberOfArrays())
        if g.GetPointData().GetArray(i).GetNumberOfComponents() == 1}
    # VTK i runs along cohere's last array axis (the frame), j the row, k the column: our (z, y, x)
    steps = np.stack([pts[0, 0, 1] - pts[0, 0, 0], pts[0, 1, 0] - pts[0, 0, 0], pts[1, 0, 0] - pts[0, 0, 0]])
    r2 = vtk.vtkXMLImageDataReader()
    r2.SetFileName(str(viz / "direct_space_images_interpolated_AmpPhase.vti"))
    r2.Update()
    im = r2.GetOutput()
    idims = im.GetDimensions()
    interp = {name: vtk_to_numpy(im.GetPointData().GetArray(name)).reshape(idims[::-1])
              for name in ("imAmp", "support")}
    r3 = vtk.vtkXMLUnstructuredGridReader()
    r3.SetFileName(str(viz / "KiKfQ.vtu"))
    r3.Update()
    q = vtk_to_numpy(r3.GetOutput().GetPointData().GetArray("vectors"))[0]  # Q, ki, kf
    return {"points": pts, "arrays": arrays, "steps_nm": steps, "interp": interp,
            "interp_spacing": np.array(im.GetSpacing()), "interp_origin": np.array(im.GetOrigin()),
            "Q": q}


def _run_cohere(work: Path, venv: Path, obj: np.ndarray, support: np.ndarray, intensity: np.ndarray) -> Path:
    exp = work / "EXP"
    data = exp / "example_data"
    ws = exp / "example_workspace" / "scan_54"
    (data / "AD34idcTIM2_example").mkdir(parents=True, exist_ok=True)
    (ws / "conf").mkdir(parents=True, exist_ok=True)
    frames = data / "AD34idcTIM2_example" / "Staff20-1a_S0054"
    if not frames.exists():
        frames.symlink_to(SHARED / "frames")
    for name in ("dark.tif", "whitefield.tif", "example.spec"):
        if not (data / name).exists():
            (data / name).symlink_to(SHARED / name)
    for conf in (SHARED / "cohere_conf").iterdir():
        if conf.name != "config_disp":
            (ws / "conf" / conf.name).write_text(conf.read_text().replace("EXP_DIR", str(exp)))
    # the example's config_disp uses names older than cohere-ui 4.5 reads (imcrop, determine_resolution):
    # the same settings under the current names, plus the unwrapped phase, displacement and strain
    (ws / "conf" / "config_disp").write_text(CONFIG_DISP.format(ws=ws))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([str(venv / "bin" / "beamline_preprocess"), str(ws)], check=True, env=env, cwd=work)
    (ws / "results_phasing").mkdir(exist_ok=True)
    (ws / "phasing_data").mkdir(exist_ok=True)
    np.save(ws / "results_phasing" / "image.npy", np.conj(obj).transpose(2, 1, 0))
    np.save(ws / "results_phasing" / "support.npy", support.transpose(2, 1, 0).astype(np.float32))
    np.save(work / "intensity_peer.npy", intensity.transpose(2, 1, 0).astype(np.float32))
    subprocess.run([str(venv / "bin" / "python"), "-c",
                    ("import numpy as np, cohere_core.utilities as ut, sys; "
                     "ut.save_tif(np.load(sys.argv[1]), sys.argv[2])"),
                    str(work / "intensity_peer.npy"), str(ws / "phasing_data" / "data.tif")], check=True, env=env)
    subprocess.run([str(venv / "bin" / "beamline_postprocess"), str(ws)], check=True, env=env, cwd=work)
    return ws / "results_viz"


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cdiplatform.physics.align import align
    from cdiplatform.postprocess import (
        binomial_split,
        fourier_shell_correlation,
        postprocess_scans,
        prtf,
        real_space_basis,
        voxel_sizes_nm,
    )

    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-venv", type=Path, default=Path("/tmp/peer-venv"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/cohere-postprocess"))
    parser.add_argument("--algorithm", default="2*(20*ER+130*HIO)+20*ER")
    parser.add_argument("--amplitude-threshold", type=float, default=0.3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    intensity, mask, geo, pixel = _load_scan54()
    objs, sups, errs = _phase(intensity, mask, range(4), args.algorithm)
    best = int(np.argmin(errs))
    halves = binomial_split(np.where(mask, 0.0, intensity), np.random.default_rng(54))
    half_objs = [_phase(h.astype(np.float64), mask, [10 + i], args.algorithm)[0][0] for i, h in enumerate(halves)]
    t_phase = time.perf_counter() - t0

    ours = postprocess_scans(objs[best][None], sups[best][None], q_step=geo["q_step"], q_peak=geo["q_peak"],
                             amplitude_threshold=args.amplitude_threshold)
    aligned = np.stack([objs[best]] + [align(objs[k], objs[best]).obj for k in range(4) if k != best])
    (prtf_curve,) = prtf(aligned[None], np.sqrt(intensity)[None], q_step=geo["q_step"], measured=~mask[None])
    fsc_b = align(half_objs[1], half_objs[0]).obj
    (fsc_curve,) = fourier_shell_correlation(half_objs[0][None], fsc_b[None], q_step=geo["q_step"])

    viz = _run_cohere(args.work, args.peer_venv, objs[best], sups[best], intensity)
    coh = _read_cohere(viz)

    basis = real_space_basis(geo["q_step"], objs.shape[1:])
    vol_conj = abs(np.linalg.det(basis))
    sup_o = ours.support[0]
    zz, yy, xx = np.meshgrid(ours.grid.z, ours.grid.y, ours.grid.x, indexing="ij")
    ours_pts = np.stack([xx[sup_o], yy[sup_o], zz[sup_o]], axis=1)
    ours_stats = _shape_stats(ours_pts, float(np.prod(ours.grid.spacing_nm)))
    # cohere's support on its own (sheared) points, with the same amplitude threshold
    amp_c, sup_c = coh["arrays"]["imAmp"], coh["arrays"]["support"] > 0.5
    keep = sup_c & (amp_c >= args.amplitude_threshold * amp_c[sup_c].max())
    coh_stats = _shape_stats(coh["points"][keep], vol_conj)
    amp_i, sup_i = coh["interp"]["imAmp"], coh["interp"]["support"] > 0.5
    keep_i = sup_i & (amp_i >= args.amplitude_threshold * amp_i[sup_i].max())
    iz, iy, ix = np.meshgrid(*[coh["interp_origin"][a] + coh["interp_spacing"][a] * np.arange(n)
                               for a, n in zip((2, 1, 0), amp_i.shape)], indexing="ij")
    coh_i_stats = _shape_stats(np.stack([ix[keep_i], iy[keep_i], iz[keep_i]], axis=1),
                               float(np.prod(coh["interp_spacing"])))

    # cohere's coordinates start at its voxel (0, 0, 0); ours at the centre N // 2: same lab axes otherwise.
    # Where do cohere's support points fall on our orthogonal grid?
    shift = np.array([n // 2 for n in objs.shape[1:]]) @ coh["steps_nm"]
    p = coh["points"][keep] - shift
    idx = [np.clip(np.rint((p[:, c] - ax[0]) / (ax[1] - ax[0])).astype(int), 0, ax.size - 1)
           for c, ax in ((2, ours.grid.z), (1, ours.grid.y), (0, ours.grid.x))]
    inside = float(sup_o[tuple(idx)].mean())
    centroid_offset = (p.mean(axis=0) - ours_pts.mean(axis=0)).tolist()
    # strain: cohere 4.5's compute_strain writes Qstrain = grad(u) . Q / 10 (Q in 1/angstrom), i.e.
    # |Q| / 10 times the strain along Q, without ramp removal; rescaled and centred, against ours
    # at the same points (nearest voxel of our grid, 2 voxels inside our support)
    from scipy.ndimage import binary_erosion

    strain_coh = coh["arrays"]["Qstrain"][keep] / (np.linalg.norm(coh["Q"]) / 10.0)
    inner = binary_erosion(sup_o, iterations=2)[tuple(idx)]
    strain_ours = ours.strain[0][tuple(idx)]
    a_s, b_s = strain_coh[inner] - strain_coh[inner].mean(), strain_ours[inner] - strain_ours[inner].mean()
    strain_cmp = {"points": int(inner.sum()), "correlation": float(np.corrcoef(a_s, b_s)[0, 1]),
                  "rms_ours": float(b_s.std()), "rms_cohere_rescaled": float(a_s.std()),
                  "rms_difference": float((a_s - b_s).std()),
                  "cohere_Qstrain_over_strain": float(np.linalg.norm(coh["Q"]) / 10.0)}
    g_ours = geo["q_peak"] / np.linalg.norm(geo["q_peak"])
    g_coh = coh["Q"] / np.linalg.norm(coh["Q"])
    out = {
        "scan": 54, "grid": list(objs.shape[1:]), "peak_pixel": list(pixel), "errors": errs.tolist(),
        "phasing_seconds": t_phase,
        "voxel_vectors_nm": {"ours": basis.tolist(), "cohere": coh["steps_nm"].tolist()},
        "voxel_sizes_nm": {"ours": voxel_sizes_nm(geo["q_step"], objs.shape[1:]).tolist(),
                           "cohere": np.linalg.norm(coh["steps_nm"], axis=1).tolist()},
        "voxel_vector_rel_diff": (np.linalg.norm(coh["steps_nm"] - basis, axis=1)
                                  / np.linalg.norm(basis, axis=1)).tolist(),
        "orthogonal_voxel_nm": {"ours": ours.grid.spacing_nm.tolist(), "cohere": coh["interp_spacing"].tolist()},
        "q_bragg": {"ours (peak pixel)": float(np.linalg.norm(geo["q_peak"])),
                    "cohere (arm, sensor centre)": float(np.linalg.norm(coh["Q"]))},
        "cohere_support_in_ours": inside, "centroid_offset_xyz_nm": centroid_offset,
        "g_angle_deg": float(np.degrees(np.arccos(np.clip(g_ours @ g_coh, -1, 1)))),
        "shape": {"ours (orthogonal grid)": ours_stats, "cohere (its sheared grid)": coh_stats,
                  "cohere (its interpolated grid)": coh_i_stats},
        "prtf_resolution_nm": {"shell": prtf_curve.resolution_nm, "zyx": prtf_curve.axis_resolution_nm.tolist(),
                               "crossed": bool(prtf_curve.crossed)},
        "fsc_resolution_nm": {"shell": fsc_curve.resolution_nm, "zyx": fsc_curve.axis_resolution_nm.tolist(),
                              "crossed": bool(fsc_curve.crossed)},
        "strain_rms": float(ours.strain[0][sup_o].std()),
        "strain_vs_cohere": strain_cmp,
    }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))

    # figure 1: central slices of the amplitude, ours and cohere's interpolated grid, same lab planes
    args.figures.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 3, figsize=(11, 7))
    lim = 230
    grids = [("ours", ours.amplitude[0], (ours.grid.z, ours.grid.y, ours.grid.x)),
             ("cohere", amp_i, tuple(coh["interp_origin"][a] + coh["interp_spacing"][a] * np.arange(n)
                                     for a, n in zip((2, 1, 0), amp_i.shape)))]
    for row, (name, amp, (cz, cy, cx)) in enumerate(grids):
        pts = ours_pts if name == "ours" else np.stack([ix[keep_i], iy[keep_i], iz[keep_i]], axis=1)
        c = pts.mean(axis=0)
        k = [int(np.argmin(np.abs(cz - c[2]))), int(np.argmin(np.abs(cy - c[1]))), int(np.argmin(np.abs(cx - c[0])))]
        planes = [(amp[k[0]], cx - c[0], cy - c[1], "x (nm)", "y (nm)", "z"),
                  (amp[:, k[1]], cx - c[0], cz - c[2], "x (nm)", "z (nm)", "y"),
                  (amp[:, :, k[2]], cy - c[1], cz - c[2], "y (nm)", "z (nm)", "x")]
        for col, (img, ha, va, hl, vl, normal) in enumerate(planes):
            ax = axes[row, col]
            ax.pcolormesh(ha, va, img / amp.max(), shading="nearest", cmap="viridis", vmin=0, vmax=1)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xlabel(hl)
            ax.set_ylabel(vl)
            ax.set_title(f"{name}: amplitude, {normal} = centroid")
    fig.suptitle("Scan 54, one reconstruction (our engine, 64^3), laboratory frame (xrayutilities), "
                 f"centred on the centroid; ours {ours.grid.spacing_nm[0]:.1f} nm voxels, "
                 f"cohere {coh['interp_spacing'][0]:.1f} nm", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.figures / "postprocess_cohere_scan54.png", dpi=90)
    plt.close(fig)

    # figure 2: PRTF and FSC
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, curve, title in ((axes[0], prtf_curve, "PRTF of 4 aligned starts"),
                             (axes[1], fsc_curve, "FSC of two half data sets")):
        ax.plot(curve.q, curve.shell, "k", label="shells")
        for a, name in enumerate("zyx"):
            ax.plot(curve.q, curve.axis_curves[a], lw=0.8, label=f"cone about {name}")
        ax.plot(curve.q, curve.threshold, "r--", label="1/e" if curve.kind == "prtf" else "1/2-bit")
        ax.set_xlabel("|q - q_Bragg| (1/angstrom)")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{title}: {curve.resolution_nm:.0f} nm" + ("" if curve.crossed else " (bound)"))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.figures / "postprocess_resolution_scan54.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
