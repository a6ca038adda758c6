"""The report's figures: NumPy arrays in, PNG files out (matplotlib's Agg, no pyplot state).

Every function draws one figure into ``path`` and returns it; none reads a
catalog (the site reads the nodes;
:func:`cdiplatform.report.benchmark_error_histograms` reads a benchmark node
for :func:`error_histograms`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

__all__ = ["ERROR_LABELS", "central_slices", "convergence", "error_histograms", "gold_distributions",
           "object_crop", "resolution_curves", "shared_phase_limit", "time_per_method"]

#: what each error metric is, as the axes say it (the 2018 CDI NN paper's Fig. 4)
ERROR_LABELS = {
    "chi": "reciprocal-space error (chi)",
    "amplitude_error": "amplitude error (MAE, max 1)",
    "phase_error": "phase error (RMS rad, common support)",
}
_DPI = 80
_MPL = tuple(int(v) for v in matplotlib.__version__.split(".")[:2])
_AMPLITUDE_FLOOR = 0.1  # phase is drawn where the amplitude exceeds this share of its maximum


def _save(fig: Figure, path: Path, dpi: int = _DPI) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _no_minor_ticks(ax) -> None:
    """Major ticks only: the minor ticks of log axes cost most of a small figure's drawing time."""
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())


def _bins(values: np.ndarray, n: int = 40) -> tuple[np.ndarray, bool]:
    """Common bins for all methods: logarithmic when the positive values span more than two decades."""
    lo, hi = np.percentile(values, [1, 99])
    if values.min() > 0 and hi > 100 * lo:
        return np.geomspace(values.min(), values.max(), n + 1), True
    hi = hi if hi > 0 else max(float(values.max()), 1e-12)
    return np.linspace(min(0.0, float(values.min())), hi, n + 1), False


def error_histograms(errors: Mapping[str, Mapping[str, np.ndarray]], path: Path, *, title: str = "",
                     labels: Mapping[str, str] = ERROR_LABELS, dpi: int = _DPI) -> Path:
    """Histograms of per-scan errors, one panel per metric, the methods overlaid.

    Parameters
    ----------
    errors : mapping
        ``errors[method][metric]``: 1-D arrays, one value per scan (NaN where
        unknown, left out). Metrics without any finite value get no panel.
    path : Path
        PNG to write.
    title : str
        Figure title.
    labels : mapping
        Axis label of each metric (``ERROR_LABELS``; other metrics by name).
    dpi : int
        Pixels per inch of the PNG.

    Raises
    ------
    ValueError
        When no metric has a finite value.
    """
    metrics = [m for m in dict.fromkeys(k for per in errors.values() for k in per)
               if any(np.isfinite(np.asarray(per.get(m, []), float)).any() for per in errors.values())]
    if not metrics:
        raise ValueError("error_histograms: no finite error to draw")
    fig = Figure(figsize=(4.2 * len(metrics), 3.3))
    axes = fig.subplots(1, len(metrics), squeeze=False, gridspec_kw={
        "left": 0.5 / (4.2 * len(metrics)), "right": 0.98, "bottom": 0.16, "top": 0.86 if title else 0.94,
        "wspace": 0.25})[0]
    for ax, metric in zip(axes, metrics):
        finite = {name: v[np.isfinite(v)] for name, per in errors.items()
                  if (v := np.asarray(per.get(metric, []), float)).size}
        everything = np.concatenate([v for v in finite.values()])
        bins, log = _bins(everything)
        for name, v in finite.items():
            if v.size:
                ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, alpha=0.55, label=f"{name} ({v.size})")
        if log:
            ax.set_xscale("log")
            _no_minor_ticks(ax)
        ax.set_xlabel(labels.get(metric, metric))
        ax.set_ylabel("scans")
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def time_per_method(seconds: Mapping[str, np.ndarray], path: Path, *, title: str = "") -> Path:
    """Compute time per scan of each method: a box per method (log scale), the median written beside it.

    Parameters
    ----------
    seconds : mapping
        ``seconds[method]``: 1-D array of seconds per scan (NaN left out).

    Raises
    ------
    ValueError
        When no method has a finite time.
    """
    finite = {k: v[np.isfinite(v) & (v > 0)] for k, v in ((k, np.asarray(v, float)) for k, v in seconds.items())}
    finite = {k: v for k, v in finite.items() if v.size}
    if not finite:
        raise ValueError("time_per_method: no finite time to draw")
    height = 0.6 * len(finite) + 1.4
    fig = Figure(figsize=(6.5, height))
    ax = fig.subplots(gridspec_kw={"left": 0.3, "right": 0.97, "bottom": 0.55 / height,
                                   "top": 1 - (0.35 if title else 0.1) / height})
    names = list(finite)
    horizontal = {"orientation": "horizontal"} if _MPL >= (3, 10) else {"vert": False}  # vert: deprecated in 3.11
    ax.boxplot([finite[k] for k in names], widths=0.6, **horizontal)
    ax.set_yticks(range(1, len(names) + 1),
                  [f"{k}\nmedian {np.median(finite[k]):.3g} s ({finite[k].size})" for k in names])
    ax.set_xscale("log")
    _no_minor_ticks(ax)
    ax.set_xlabel("seconds per scan")
    ax.invert_yaxis()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def object_crop(amplitudes: Sequence[np.ndarray], *, margin: int = 2) -> tuple[slice, ...]:
    """The box (slices per axis) holding every object's voxels above 10 % of its maximum, plus ``margin``.

    Parameters
    ----------
    amplitudes : sequence of ndarray
        Amplitudes on one grid (same shape), 2D or 3D.
    """
    shape = amplitudes[0].shape
    inside = np.zeros(shape, bool)
    for a in amplitudes:
        a = np.nan_to_num(np.asarray(a, float))
        if a.max() > 0:
            inside |= a > _AMPLITUDE_FLOOR * a.max()
    if not inside.any():
        return tuple(slice(0, n) for n in shape)
    box = []
    for axis, n in enumerate(shape):
        hit = np.flatnonzero(inside.any(axis=tuple(a for a in range(len(shape)) if a != axis)))
        box.append(slice(max(0, hit[0] - margin), min(n, hit[-1] + 1 + margin)))
    return tuple(box)


def _centre(weights: np.ndarray) -> tuple[int, ...]:
    w = np.nan_to_num(np.asarray(weights, float))
    if w.max() <= 0:
        return tuple(n // 2 for n in w.shape)
    w = np.where(w > _AMPLITUDE_FLOOR * w.max(), w, 0.0)
    grids = np.indices(w.shape, sparse=True)
    return tuple(int(np.clip(round(float((g * w).sum() / w.sum())), 0, n - 1)) for g, n in zip(grids, w.shape))


def shared_phase_limit(amplitudes: Sequence[np.ndarray], phases: Sequence[np.ndarray]) -> float:
    """One symmetric phase scale for objects shown side by side: the 99th percentile of ``|phase|`` where
    each amplitude exceeds 10 % of its maximum, at most pi (radians)."""
    inside = []
    for a, p in zip(amplitudes, phases):
        a = np.nan_to_num(np.asarray(a, float))
        if a.max() > 0:
            v = np.abs(np.asarray(p, float)[a > _AMPLITUDE_FLOOR * a.max()])
            inside.append(v[np.isfinite(v)])
    values = np.concatenate(inside) if inside else np.zeros(0)
    if values.size == 0 or np.percentile(values, 99) <= 0:
        return float(np.pi)
    return float(min(np.pi, np.percentile(values, 99)))


def _cmap(name: str):
    """A colour map that draws NaN (outside an object or its support) light grey."""
    return matplotlib.colormaps[name].with_extremes(bad="#e4e4e8")


def _planes(volume: np.ndarray, centre: tuple[int, ...],
            coords: Sequence[np.ndarray] | None = None) -> list[tuple[str, np.ndarray]]:
    """Central planes through ``centre``, titled by their position (in nm when ``coords`` are given);
    a 2-D array is its own plane."""
    if volume.ndim == 2:
        return [("", volume)]
    planes = []
    for axis, name in enumerate("zyx"):
        where = f"{coords[axis][centre[axis]]:.0f} nm" if coords is not None else str(centre[axis])
        planes.append((f"{name} = {where}", np.take(volume, centre[axis], axis=axis)))
    return planes


def central_slices(amplitude: np.ndarray, phase: np.ndarray, path: Path, *, title: str = "",
                   crop: tuple[slice, ...] | None = None, strain: np.ndarray | None = None,
                   strain_support: np.ndarray | None = None,
                   strain_coords_nm: Sequence[np.ndarray] | None = None,
                   strain_limit: float | None = None, phase_limit: float | None = None) -> Path:
    """Central slices of one object (the 2021 3D-CDI-NN paper's Fig. 5): amplitude, phase, strain.

    Parameters
    ----------
    amplitude, phase : ndarray
        ``(y, x)`` or ``(z, y, x)``; phase in radians, drawn where the amplitude
        exceeds 10 % of its maximum on a symmetric scale of ``phase_limit``
        (default :func:`shared_phase_limit` of this object). The planes pass through the
        amplitude-weighted centre.
    path : Path
        PNG to write.
    crop : tuple of slice, optional
        The box to draw (``object_crop`` of every method on the grid, so that
        methods side by side show the same region).
    strain : ndarray, optional
        Strain on the post-processing grid (``(z, y, x)``, or 2D), drawn inside
        ``strain_support`` (cropped to it) on a symmetric scale of
        ``strain_limit`` (default: the 99th percentile of its magnitude); the
        planes are titled in nm when ``strain_coords_nm`` (one coordinate array
        per axis, nm) is given.
    """
    amplitude = np.nan_to_num(np.asarray(amplitude, float))
    phase = np.asarray(phase, float)
    if crop is not None:
        amplitude, phase = amplitude[crop], phase[crop]
    peak = amplitude.max() if amplitude.max() > 0 else 1.0
    amplitude = amplitude / peak
    centre = _centre(amplitude)
    limit = phase_limit or shared_phase_limit([amplitude], [phase])
    rows = [("amplitude", _planes(amplitude, centre), {"cmap": _cmap("gray_r"), "vmin": 0, "vmax": 1}),
            ("phase (rad)", _planes(np.where(amplitude > _AMPLITUDE_FLOOR, phase, np.nan), centre),
             {"cmap": _cmap("RdBu_r"), "vmin": -limit, "vmax": limit})]
    if strain is not None:
        strain = np.asarray(strain, float)
        support = np.ones(strain.shape, bool) if strain_support is None else np.asarray(strain_support) != 0
        box = object_crop([support.astype(float)], margin=2)
        shown = np.where(support, strain, np.nan)[box]
        coords = None
        label = "strain"
        if strain_coords_nm is not None:
            coords = [np.asarray(c, float)[b] for c, b in zip(strain_coords_nm, box)]
            steps = [float(abs(c[1] - c[0])) for c in coords if c.size > 1]
            label = f"strain\n{steps[0]:.3g} nm voxels" if steps else label
        if strain_limit:
            limit = float(strain_limit)
        elif np.isfinite(shown).any():
            limit = float(np.nanpercentile(np.abs(shown), 99))
        else:
            limit = 0.0
        limit = limit if np.isfinite(limit) and limit > 0 else 1e-4
        rows.append((label, _planes(shown, _centre(support[box].astype(float)), coords),
                     {"cmap": _cmap("PuOr_r"), "vmin": -limit, "vmax": limit}))
    return _save(_mosaic(rows, title), path)


def _mosaic(rows: list[tuple[str, list[tuple[str, np.ndarray]], dict[str, Any]]], title: str) -> Figure:
    """One image of every plane, colour-mapped here, with a colour bar per row: a single axes to draw
    (a dozen axes with their ticks cost a second a figure)."""
    gap, label_h, bar_w, bar_text, target = 6, 16, 10, 100, 130
    title_h = 22 if title else 2
    placed = []  # (rgba, top, left, plane title), in pixels
    bars = []  # (rgba, top, left, height, label, vmin, vmax)
    top, width = title_h, 0
    for label, planes, style in rows:
        biggest = max(max(p.shape) for _, p in planes)
        scale = max(1, target // biggest)
        cmap, vmin, vmax = style["cmap"], style["vmin"], style["vmax"]
        left = gap
        height = 0
        for plane_title, plane in planes:
            rgba = cmap(np.clip((plane - vmin) / (vmax - vmin), 0, 1), bytes=False)
            rgba[~np.isfinite(plane)] = cmap.get_bad()
            rgba = np.repeat(np.repeat(rgba, scale, axis=0), scale, axis=1)
            placed.append((rgba, top + label_h, left, plane_title))
            left += rgba.shape[1] + gap
            height = max(height, rgba.shape[0])
        gradient = cmap(np.linspace(1, 0, height)[:, None].repeat(bar_w, axis=1))
        bars.append((gradient, top + label_h, left + gap, height, label, vmin, vmax))
        width = max(width, left + gap + bar_w + bar_text)
        top += label_h + height + gap
    canvas = np.ones((top, width, 4))
    for rgba, y, x, _ in placed:
        canvas[y:y + rgba.shape[0], x:x + rgba.shape[1]] = rgba
    for gradient, y, x, height, *_ in bars:
        canvas[y:y + height, x:x + gradient.shape[1]] = gradient
    fig = Figure(figsize=(width / _DPI, top / _DPI), dpi=_DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest", extent=(0, width, top, 0))
    ax.set_xlim(0, width)
    ax.set_ylim(top, 0)
    ax.set_axis_off()
    text = {"fontsize": 9, "color": "#222"}
    if title:
        ax.text(width / 2, 3, title, ha="center", va="top", fontsize=11, weight="bold", color="#222")
    for _, y, x, plane_title in placed:
        ax.text(x, y - 2, plane_title, ha="left", va="bottom", **text)
    for _, y, x, height, label, vmin, vmax in bars:
        right = x + bar_w + 3
        ax.text(right, y, f"{vmax:.3g}", ha="left", va="top", **text)
        ax.text(right, y + height, f"{vmin:.3g}", ha="left", va="bottom", **text)
        ax.text(right, y + height / 2, label, ha="left", va="center", wrap=False, **text)
    return fig


def convergence(histories: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, *, title: str = "",
                iterations: Mapping[str, np.ndarray] | None = None,
                points: Mapping[str, tuple[float, float]] | None = None) -> Path:
    """Convergence (chi per iteration) and time to accuracy (chi against seconds) of each method.

    Parameters
    ----------
    histories : mapping
        ``histories[method] = (seconds, chi)``: one scan's recorded history
        (NaN padding left out).
    iterations : mapping, optional
        ``iterations[method]``: the iteration of each record (a result's
        ``record`` coordinate); without it the records are counted.
    points : mapping, optional
        ``points[method] = (seconds, chi)`` of methods without a history (a
        network's one prediction): a marker on the time-to-accuracy panel.

    Raises
    ------
    ValueError
        When there is nothing to draw.
    """
    points = {k: v for k, v in (points or {}).items() if np.all(np.isfinite(v)) and v[0] > 0 and v[1] > 0}
    iterations = iterations or {}
    cleaned = {}
    for name, (sec, chi) in histories.items():
        sec, chi = np.asarray(sec, float), np.asarray(chi, float)
        at = np.asarray(iterations[name], float) if name in iterations else np.arange(1, chi.size + 1, dtype=float)
        keep = np.isfinite(sec) & np.isfinite(chi) & (chi > 0)
        if keep.any():
            cleaned[name] = (sec[keep], chi[keep], at[keep])
    if not cleaned and not points:
        raise ValueError("convergence: no history and no point to draw")
    fig = Figure(figsize=(9.0, 3.2))
    ax_conv, ax_time = fig.subplots(1, 2, gridspec_kw={"left": 0.08, "right": 0.98, "bottom": 0.15,
                                                       "top": 0.84 if title else 0.9, "wspace": 0.22})
    cycle = iter(f"C{i}" for i in range(100))
    colours = {name: next(cycle) for name in dict.fromkeys([*cleaned, *points])}
    for name, (sec, chi, at) in cleaned.items():
        ax_conv.plot(at, chi, color=colours[name], label=name)
        ax_time.plot(np.where(sec > 0, sec, np.nan), chi, color=colours[name], label=name)
    for name, (sec, chi) in points.items():
        ax_time.plot([sec], [chi], "o", color=colours[name], label=name)
    ax_conv.set_xlabel("iteration" if iterations else "record")
    ax_conv.set_title("convergence", fontsize="medium")
    ax_time.set_xlabel("seconds")
    ax_time.set_xscale("log")
    ax_time.set_title("time to accuracy", fontsize="medium")
    for ax in (ax_conv, ax_time):
        ax.set_yscale("log")
        ax.set_ylabel("chi")
        _no_minor_ticks(ax)
    ax_time.legend(fontsize="small")
    if not cleaned:
        ax_conv.text(0.5, 0.5, "no history recorded", ha="center", va="center", transform=ax_conv.transAxes)
    if title:
        fig.suptitle(title, fontsize="medium")
    return _save(fig, path)


#: panel title of each kind of resolution curve
RESOLUTION_TITLES = {"prtf": "PRTF (kept starts)", "fsc": "FSC (binomial halves)"}


def resolution_curves(curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]], path: Path,
                      *, title: str = "") -> Path:
    """PRTF and FSC curves of one scan against ``|q|``, the methods overlaid, each with its threshold.

    Parameters
    ----------
    curves : mapping
        ``curves[kind][method] = (q, curve, threshold)``, ``kind`` ``"prtf"``
        or ``"fsc"``: shell centres (1/angstrom), the curve and its threshold
        per shell (NaN padding left out). One panel per kind; the top axis
        gives the half-period ``pi / q`` in nm.
    path : Path
        PNG to write.
    title : str
        Figure title.

    Raises
    ------
    ValueError
        When no curve has a finite value.
    """
    cleaned: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for kind, per in curves.items():
        for method, (q, curve, threshold) in per.items():
            q, curve = np.asarray(q, float), np.asarray(curve, float)
            threshold = np.broadcast_to(np.asarray(threshold, float), q.shape)
            keep = np.isfinite(q) & np.isfinite(curve) & (q > 0)
            if keep.any():
                cleaned.setdefault(kind, {})[method] = (q[keep], curve[keep], threshold[keep])
    if not cleaned:
        raise ValueError("resolution: no PRTF or FSC values to draw")
    fig = Figure(figsize=(4.6 * len(cleaned), 3.5))
    axes = np.atleast_1d(fig.subplots(1, len(cleaned), gridspec_kw={"left": 0.1, "right": 0.97, "bottom": 0.14,
                                                                     "top": 0.72 if title else 0.78,
                                                                     "wspace": 0.25}))
    cycle = iter(f"C{i}" for i in range(100))
    colours = {m: next(cycle) for m in dict.fromkeys(m for per in cleaned.values() for m in per)}

    def half_period(q):  # nm from 1/angstrom and back (its own inverse), finite at q = 0
        return np.pi / (10.0 * np.maximum(np.abs(np.asarray(q, float)), 1e-9))

    for ax, (kind, per) in zip(axes, cleaned.items()):
        top = 1.05
        for method, (q, curve, threshold) in per.items():
            ax.plot(q, curve, "o-", ms=3, color=colours[method], label=method)
            ax.plot(q, threshold, ":", color=colours[method], lw=1)
            top = max(top, float(np.nanmax(curve)) * 1.05)
        ax.plot([], [], ":", color="#555", label="threshold" + (" (1/e)" if kind == "prtf" else " (1/2-bit)"))
        ax.set_ylim(min(0.0, min(float(np.nanmin(c)) for _, c, _ in per.values())), top)
        q_max = max(float(q.max()) for q, _, _ in per.values())
        ax.set_xlim(0, 1.04 * q_max)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_xlabel("|q| (1/angstrom)")
        ax.set_ylabel(kind.upper())
        ax.set_title(RESOLUTION_TITLES.get(kind, kind), fontsize="medium")
        secondary = ax.secondary_xaxis("top", functions=(half_period, half_period))
        finest = float(half_period(q_max))
        nice = np.array([1, 1.5, 2, 3, 5, 7]) * 10.0 ** np.floor(np.log10(finest))
        nice = np.concatenate([nice, 10 * nice, 100 * nice])
        secondary.xaxis.set_major_locator(FixedLocator(nice[(nice >= finest) & (nice <= 6 * finest)]))
        secondary.set_xlabel("half-period (nm)", fontsize="small")
        secondary.tick_params(labelsize="small")
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    return _save(fig, path)


def gold_distributions(*, phase_inside: np.ndarray, phase_range: np.ndarray, phase_residual: np.ndarray,
                       residual_strain: np.ndarray, path: Path, title: str = "", dpi: int = _DPI) -> Path:
    """Distributions of a simulated gold collection: phases inside the crystals, ranges, residual strain.

    Parameters
    ----------
    phase_inside : ndarray
        Phase values (rad) inside every strained crystal, concatenated.
    phase_range, phase_residual : ndarray
        Per crystal: phase range and the residual after a plane fit (rad).
    residual_strain : ndarray
        Per crystal, ``(n, 3, 3)``: the residual strain tensor; its trace and
        largest shear component are drawn.
    """
    residual_strain = np.asarray(residual_strain, float)
    trace = np.trace(residual_strain, axis1=1, axis2=2)
    shear = np.abs(residual_strain[:, [0, 0, 1], [1, 2, 2]]).max(axis=1)
    fig = Figure(figsize=(15, 3.3))
    axes = fig.subplots(1, 4, gridspec_kw={"left": 0.04, "right": 0.99, "bottom": 0.16,
                                           "top": 0.86 if title else 0.95, "wspace": 0.25})
    axes[0].hist(phase_inside, bins=60)
    axes[0].set_xlabel("phase inside the crystals (rad)")
    axes[1].hist(phase_range, bins=12)
    axes[1].set_xlabel("phase range per crystal (rad)")
    axes[2].hist(phase_residual, bins=12)
    axes[2].set_xlabel("phase residual after a plane fit (rad)")
    axes[3].hist(trace, bins=12, alpha=0.7, label="trace")
    axes[3].hist(shear, bins=12, alpha=0.7, label="max |shear|")
    axes[3].set_xlabel("residual strain")
    axes[3].xaxis.set_major_locator(MaxNLocator(4))
    axes[3].ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
    axes[3].legend()
    for ax in axes:
        ax.set_ylabel("count")
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)
