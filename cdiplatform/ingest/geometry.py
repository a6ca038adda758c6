"""The reciprocal-space grid of a rocking scan: q step per frame, per row, per column.

A rocking scan samples reciprocal space on a sheared, anisotropic grid:
stepping the rocking angle moves the Bragg peak by ``|Q| dtheta sin(angle
between the rocking axis and Q)``, stepping one detector pixel by about
``k p / D`` (wave number ``k = 2 pi / lambda``, pixel ``p``, distance ``D``),
and the three step vectors are not orthogonal.

:func:`q_steps` computes the three step vectors with xrayutilities for the
APS 34-ID-C six-circle geometry (sample circles Theta, Chi, Phi about
``y+, z-, y+``; detector circles Delta, Gamma about ``y+, x-``; beam along
``z``; detector rows along ``y-``, columns along ``x+``; the detector arm
points at the sensor centre). :func:`q_steps_approx` gives the textbook
magnitudes without xrayutilities.

Frames. xrayutilities' ``QConversion`` returns q in the *sample* frame (the
laboratory q rotated back by the sample circles). :func:`q_steps` returns the
*laboratory* frame by default: the steps as they are for the crystal held at
the rocking angle of the grid centre, in xrayutilities' lab axes (x, y, z;
beam along z). Because Theta, the rocking circle, is the outermost sample
circle, the lab-frame steps do not depend on the sample angles at all
(``R(th) R(th + dth)^-1 = R_y(-dth)``); the sample frame does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["Q_UNITS", "q_steps", "q_steps_approx", "wavelength_angstrom"]

#: unit of every q value here
Q_UNITS = "1/angstrom"
_HC_KEV_ANGSTROM = 12.398419843320026  # h c in keV * angstrom


def wavelength_angstrom(energy_kev: float) -> float:
    """X-ray wavelength in angstrom for a photon energy in keV."""
    if not energy_kev > 0:
        raise ValueError(f"energy must be positive (keV), got {energy_kev}")
    return _HC_KEV_ANGSTROM / energy_kev


def q_steps_approx(*, energy_kev: float, delta_deg: float, gamma_deg: float, rocking_step_deg: float,
                   camdist_mm: float, pixel_size_m: Sequence[float]) -> dict:
    """Magnitudes of the q steps from textbook formulas (no xrayutilities).

    ``|Q| = 2 k sin(theta_B)`` with ``cos(2 theta_B) = cos(delta) cos(gamma)``;
    per rocking step ``|Q| dtheta`` (an upper bound: exact when the rocking
    axis is perpendicular to Q); per pixel ``k p / D``.

    Returns
    -------
    dict with ``q_bragg``, ``two_theta_deg`` and ``q_voxel`` (frame, row,
    column) in 1/angstrom.
    """
    k = 2 * np.pi / wavelength_angstrom(energy_kev)
    cos_2t = np.cos(np.radians(delta_deg)) * np.cos(np.radians(gamma_deg))
    two_theta = np.arccos(cos_2t)
    q = 2 * k * np.sin(two_theta / 2)
    distance_m = camdist_mm * 1e-3
    voxel = (
        abs(q * np.radians(rocking_step_deg)),
        k * pixel_size_m[0] / distance_m,
        k * pixel_size_m[1] / distance_m,
    )
    return {"q_bragg": float(q), "two_theta_deg": float(np.degrees(two_theta)),
            "q_voxel": tuple(float(v) for v in voxel)}


def q_steps(*, energy_kev: float, delta_deg: float, gamma_deg: float, rocking_step_deg: float,
            camdist_mm: float, pixel_size_m: Sequence[float], sensor_shape: Sequence[int] = (512, 512),
            pixel: Sequence[float] | None = None, sample_angles_deg: Sequence[float] = (0.0, 90.0, 0.0),
            binning: Sequence[int] = (1, 1, 1), orientation: Sequence[str] = ("y-", "x+"),
            frame: str = "laboratory") -> dict:
    """The q step vectors of the (frame, row, column) grid, with xrayutilities.

    Parameters
    ----------
    energy_kev : float
        Photon energy, keV.
    delta_deg, gamma_deg : float
        Detector arm angles, degrees.
    rocking_step_deg : float
        Rocking (Theta) step per frame, degrees.
    camdist_mm : float
        Sample-detector distance, mm.
    pixel_size_m : (float, float)
        Pixel pitch (rows, columns), metres.
    sensor_shape : (int, int)
        Full sensor, pixels; the arm points at its centre.
    pixel : (float, float), optional
        Sensor pixel (row, column) where the steps are evaluated (the Bragg
        peak); default the sensor centre.
    sample_angles_deg : (float, float, float)
        Theta, Chi, Phi at the grid centre, degrees. They matter only for
        ``frame="sample"``: the laboratory steps do not depend on them (Theta
        is the outermost circle).
    binning : (int, int, int)
        Binning factors of the grid (frame, row, column); steps scale with them,
        and ``q_peak`` moves to the centre of the binned voxel that starts at
        ``pixel`` (where :func:`~cdiplatform.ingest.prepare.prepare_scan` puts the peak).
    orientation : (str, str)
        Lab directions of increasing row and column (xrayutilities notation).
    frame : {"laboratory", "sample"}
        Frame of the returned vectors: xrayutilities' laboratory axes, or the
        sample frame of its QConversion at ``sample_angles_deg``. Lengths,
        angles and the handedness (sign of the determinant) are the same.

    Returns
    -------
    dict with
        ``q_step`` : ndarray (3, 3), row ``i`` the signed q change for one step
        along grid axis ``i`` (frame, row, column), components (x, y, z), in
        1/angstrom, in ``frame``;
        ``q_voxel`` : tuple of 3 floats, their lengths;
        ``angles_deg`` : angles between the steps (frame-row, frame-column,
        row-column), 90 for an orthogonal grid;
        ``q_bragg`` : |Q| at the grid centre (``|q_peak|``);
        ``q_peak`` : ndarray (3,), Q at the grid centre (``pixel``, or with
        binning the centre of its binned voxel) in ``frame``, 1/angstrom;
        ``frame`` : the frame's name.
    """
    import xrayutilities as xu

    if frame not in ("laboratory", "sample"):
        raise ValueError(f"frame must be 'laboratory' or 'sample', not {frame!r}")
    qconv = xu.experiment.QConversion(("y+", "z-", "y+"), ("y+", "x-"), (0, 0, 1))
    n1, n2 = int(sensor_shape[0]), int(sensor_shape[1])
    qconv.init_area(orientation[0], orientation[1], cch1=n1 / 2, cch2=n2 / 2, Nch1=n1, Nch2=n2,
                    distance=camdist_mm * 1e-3, pwidth1=pixel_size_m[0], pwidth2=pixel_size_m[1])
    r, c = (n1 / 2, n2 / 2) if pixel is None else (float(pixel[0]), float(pixel[1]))
    r0, c0 = int(np.clip(np.floor(r), 0, n1 - 2)), int(np.clip(np.floor(c), 0, n2 - 2))
    th, chi, phi = (float(a) for a in sample_angles_deg)
    ths = np.array([th, th + rocking_step_deg])
    ones = np.ones(2)
    qx, qy, qz = qconv.area(ths, chi * ones, phi * ones, delta_deg * ones, gamma_deg * ones,
                            en=energy_kev * 1e3, roi=(r0, r0 + 2, c0, c0 + 2))
    q = np.stack([qx, qy, qz], axis=-1)  # (theta, row, column, xyz)
    steps = np.stack([q[1, 0, 0] - q[0, 0, 0], q[0, 1, 0] - q[0, 0, 0], q[0, 0, 1] - q[0, 0, 0]])
    bins = np.asarray(binning, dtype=float)
    # a binned voxel holds the raw voxels pixel .. pixel + b - 1: its q is their mean
    peak = q[0, 0, 0] + ((bins - 1) / 2) @ steps
    steps = steps * bins[:, None]
    if frame == "laboratory":
        steps = np.stack([qconv.transformSample2Lab(v, th, chi, phi) for v in steps])
        peak = qconv.transformSample2Lab(peak, th, chi, phi)
    norms = np.linalg.norm(steps, axis=1)

    def angle(a, b):
        return float(np.degrees(np.arccos(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))))

    return {
        "q_step": steps,
        "q_voxel": tuple(float(v) for v in norms),
        "angles_deg": (angle(steps[0], steps[1]), angle(steps[0], steps[2]), angle(steps[1], steps[2])),
        "q_bragg": float(np.linalg.norm(peak)),
        "q_peak": np.asarray(peak, dtype=float),
        "frame": frame,
    }
