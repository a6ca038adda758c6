"""``cdip export``: post-processed reconstructions to the files viewers open (VTK image data, CXI)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from cdiplatform.cli._console import say
from cdiplatform.errors import CatalogError

FORMATS = ("vti", "cxi")


def _file_name(scan) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", str(scan))


def export(
    catalog: Annotated[Path, typer.Argument(help="catalog (.zarr)")],
    node: Annotated[str, typer.Argument(help="a post-processed result node (the postprocess stage's output)")],
    format: Annotated[str, typer.Option("--format", help="vti (VTK image data: ParaView) or cxi (HDF5, CXI layout)")],
    out: Annotated[Path, typer.Option(help="folder for the files (one per scan)")] = Path("export"),
    scans: Annotated[Optional[list[str]], typer.Option("--scans", help="scan(s) to export (default: every ok scan)")]
    = None,
) -> None:
    """Write each scan of a post-processed node (amplitude, phase, displacement, strain, support in nm) to a file."""
    from cdiplatform.catalog import open_catalog
    from cdiplatform.postprocess import write_cxi, write_vti

    if format not in FORMATS:
        raise CatalogError(f"--format {format!r}: choose vti or cxi")
    cat = open_catalog(catalog)
    ds = cat.open(node, chunks=None)
    if ds.attrs.get("method") != "postprocess" or "strain" not in ds:
        raise CatalogError(f"{catalog}:{node} is not a post-processed node (no strain on an orthogonal grid in nm): "
                           f"run the postprocess stage on it first")
    ids = ds["scan"].values.tolist()
    wanted = ids if not scans else [next((s for s in ids if str(s) == w), w) for w in scans]
    missing = [w for w in wanted if w not in ids]
    if missing:
        raise CatalogError(f"{catalog}:{node} has no scan {missing[0]!r} (it has {', '.join(map(str, ids[:10]))})")
    out.mkdir(parents=True, exist_ok=True)
    spacing = [float(ds[d].values[1] - ds[d].values[0]) for d in ("z", "y", "x")]
    origin = [float(ds[d].values[0]) for d in ("z", "y", "x")]
    frame = str(ds.attrs.get("frame", "laboratory"))
    written = 0
    for scan in wanted:
        one = ds.sel(scan=scan).load()
        if int(one["status"]) != 1:
            say(f"scan {scan}: not exported ({one['reason'].item()})", prefix="skipped ", prefix_style="yellow")
            continue
        fields = {k: np.asarray(one[k].values) for k in ("amplitude", "phase", "displacement", "strain")
                  + (("strain_absolute",) if "strain_absolute" in one else ())}
        support = np.asarray(one["support"].values) != 0
        path = out / f"{Path(node).name}_{_file_name(scan)}.{format}"
        if format == "vti":
            write_vti(path, {**fields, "support": support.astype(np.uint8)}, spacing_nm=spacing, origin_nm=origin,
                      frame=frame)
        else:
            write_cxi(path, amplitude=fields.pop("amplitude"), phase=fields.pop("phase"), support=support,
                      spacing_nm=spacing, origin_nm=origin, frame=frame, arrays=fields,
                      units={"displacement": "nm", "strain": "1", "strain_absolute": "1"},
                      configuration={"source": f"{catalog}:{node}", "scan": str(scan),
                                     "g_direction": np.asarray(one["g_direction"].values),
                                     "q_bragg_per_angstrom": float(one["q_bragg"].values)},
                      command=f"cdip export {catalog} {node} --format {format}")
        written += 1
        say(str(path), prefix="wrote ")
    say(f"{written} file(s) in {out}")
