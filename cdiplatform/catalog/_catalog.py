"""The :class:`Catalog`: one zarr v3 hierarchy of scan collections, results and models."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
import zarr
from zarr.errors import ContainsGroupError

from cdiplatform.catalog._errors import CatalogError, NodeNotFoundError
from cdiplatform.catalog.hashing import combine_digests, dataset_hash
from cdiplatform.catalog.layout import FORMAT_ATTR, FORMAT_VERSION, KINDS, NodeKind, check_node_path, node_kind
from cdiplatform.catalog.run_nodes import (
    BOOKKEEPING,
    STATUS_FAILED,
    Var,
    bookkeeping_tail,
    chunk_dataset,
)
from cdiplatform.catalog.schema import validate

__all__ = ["Catalog", "is_node_set", "open_catalog", "parse_node_ref"]

Mode = Literal["r", "a"]

#: zarr arrays of nodes being written by this process, keyed by (catalog, node, allocation time)
_ARRAYS: dict[tuple[str, str, int], dict[str, zarr.Array]] = {}


def _text_to_object(ds: xr.Dataset) -> xr.Dataset:
    """Fixed-width numpy text has no stable zarr v3 dtype: store text as variable-length UTF-8."""
    out = ds.copy()
    for name, var in ds.variables.items():
        if var.dtype.kind == "U":
            out[name] = var.astype(object)
    return out


def parse_node_ref(ref: str, *, default_catalog: str | Path | None = None) -> tuple[Path, str]:
    """Split ``CATALOG:NODE`` (or a bare ``NODE``) into a catalog path and a node path."""
    if ":" in ref:
        cat, node = ref.rsplit(":", 1)
        return Path(cat), check_node_path(node)
    if default_catalog is None:
        raise CatalogError(f"{ref!r} names no catalog: write it as CATALOG:NODE")
    return Path(default_catalog), check_node_path(ref)


class Catalog:
    """A catalog on disk: list, open, query and write its nodes.

    Use :func:`open_catalog` rather than the constructor. Reading needs nothing
    of ours: ``xarray.open_datatree(path, engine="zarr")`` opens the same tree.

    Parameters
    ----------
    path : path-like
        The ``.zarr`` directory.
    mode : {"r", "a"}
        ``"r"`` reads only (the committed examples catalog); ``"a"`` also writes.
    """

    def __init__(self, path: str | os.PathLike, *, mode: Mode = "r") -> None:
        self.path = Path(path)
        self.mode = mode
        self._root = self._open_root()

    # ------------------------------------------------------------------ opening
    def _open_root(self) -> zarr.Group:
        exists = self.path.exists()
        if not exists and self.mode == "r":
            raise CatalogError(f"{self.path}: no catalog there (the path does not exist)")
        if exists and not self.path.is_dir():
            raise CatalogError(f"{self.path}: not a catalog (a file, not a directory)")
        if exists and not (self.path / "zarr.json").is_file():
            if self.mode == "r" or any(self.path.iterdir()):
                raise CatalogError(f"{self.path}: not a catalog (a directory without zarr.json); "
                                   f"name a new path or an existing catalog")
            exists = False  # an empty directory: make the catalog in it
        if exists:
            try:
                root = zarr.open_group(self.path, mode="r" if self.mode == "r" else "a", zarr_format=3)
            except Exception as exc:  # zarr raises several types for a foreign directory
                raise CatalogError(f"{self.path}: not a catalog ({type(exc).__name__}: {exc})") from None
            if root.attrs.get(FORMAT_ATTR) is None:
                raise CatalogError(
                    f"{self.path}: not a catalog (a zarr group without the {FORMAT_ATTR!r} attribute)"
                )
            return root
        self.path.parent.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(self.path, mode="a", zarr_format=3)
        root.attrs.update({FORMAT_ATTR: FORMAT_VERSION, "title": f"cdiplatform catalog {self.path.stem}"})
        for group in KINDS:
            _require_group(root, group)
        return root

    def __repr__(self) -> str:
        return f"<Catalog {str(self.path)!r} mode={self.mode!r} nodes={len(self.nodes())}>"

    # ------------------------------------------------------------------ listing
    def nodes(self, kind: NodeKind | None = None) -> list[str]:
        """Node paths, sorted; only those of ``kind`` when given."""
        found: list[str] = []
        for top, (k, depth) in KINDS.items():
            if kind is not None and k != kind or top not in self._root:
                continue
            found.extend(self._walk(self._root[top], top, depth))
        return sorted(found)

    def _walk(self, group: zarr.Group, prefix: str, depth: int) -> Iterator[str]:
        for name, child in group.groups():
            path = f"{prefix}/{name}"
            if depth == 1:
                yield path
            else:
                yield from self._walk(child, path, depth - 1)

    def __contains__(self, node: str) -> bool:
        node = check_node_path(node)
        try:
            obj = self._root[node]
        except KeyError:
            return False
        return isinstance(obj, zarr.Group)

    def _require(self, node: str) -> str:
        node = check_node_path(node)
        if node not in self:
            raise NodeNotFoundError(f"{self.path}: no node {node!r}")
        return node

    # ------------------------------------------------------------------ reading
    def open(self, node: str, *, chunks: Any = "auto-zarr") -> xr.Dataset:
        """The node as a lazy :class:`xarray.Dataset`: dask arrays on the zarr chunks by default;
        ``chunks=None`` gives lazily indexed arrays without dask (what tasks on a worker use)."""
        node = self._require(node)
        kwargs = {} if chunks == "auto-zarr" else {"chunks": chunks}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
            return xr.open_zarr(self.path, group=node, consolidated=False, **kwargs)

    __getitem__ = open

    def array(self, node: str, name: str) -> zarr.Array:
        """A variable of a node as a read-only zarr array (for streaming blocks, e.g. to a DataLoader)."""
        node = self._require(node)
        try:
            return zarr.open_array(self.path, path=f"{node}/{name}", mode="r", zarr_format=3)
        except (KeyError, FileNotFoundError):
            raise NodeNotFoundError(f"{self.path}:{node} has no variable {name!r}") from None

    def attrs(self, node: str) -> dict[str, Any]:
        """The node's attributes (provenance among them), without opening its arrays."""
        node = self._require(node)
        return dict(self._root[node].attrs)

    def provenance(self, node: str) -> dict[str, Any]:
        """The provenance record of a node (see :mod:`cdiplatform.catalog.provenance`)."""
        return self.attrs(node).get("provenance", {})

    def tree(self) -> xr.DataTree:
        """The whole catalog as an :class:`xarray.DataTree`, lazily."""
        return xr.open_datatree(self.path, engine="zarr", consolidated=False)

    def query(self, node_kind: NodeKind, /, **match: Any) -> list[str]:
        """Nodes of ``kind`` with a per-scan coordinate or attribute equal to each ``match`` value.

        Examples
        --------
        >>> cat.query("collection", kind="measured", beamtime="2026-11-34idc")  # doctest: +SKIP
        """
        hits = []
        for node in self.nodes(node_kind):
            attrs = self.attrs(node)
            ds = None
            ok = True
            for key, want in match.items():
                if key in attrs and attrs[key] == want:
                    continue
                if ds is None:
                    ds = self.open(node)
                if key in ds.coords and ds[key].dims == ("scan",):
                    if not np.any(np.asarray(ds[key].values) == want):
                        ok = False
                elif key in ds.attrs and ds.attrs[key] == want:
                    continue
                else:
                    ok = False
                if not ok:
                    break
            if ok:
                hits.append(node)
        return hits

    def failed(self, node: str) -> xr.Dataset:
        """The scans of a run node whose ``status`` is failed, with their ``reason``."""
        ds = self.open(node, chunks=None)
        if "status" not in ds:
            raise CatalogError(f"{self.path}:{node} has no per-scan status (not written by a run)")
        status = ds["status"].load()
        return ds[["status", "reason"]].isel(scan=np.flatnonzero(status.values == STATUS_FAILED)).load()

    def content_hash(self, node: str) -> str:
        """Hash of a node's content (:mod:`cdiplatform.catalog.hashing`), never by re-reading run data.

        A run node's hash comes from the per-scan digests its writers
        recorded; a node written whole carries it in its ``content_hash``
        attribute (nodes written before that attribute existed are hashed
        from their arrays once).
        """
        node = self._require(node)
        group = self._root[node]
        if "content_hash" in group.attrs:
            return str(group.attrs["content_hash"])
        if "digest" in group:
            return combine_digests(np.asarray(group["digest"][...], dtype="<u8"))
        ds = self.open(node, chunks=None).load()
        return dataset_hash({str(k): v.values for k, v in ds.variables.items()})

    # ------------------------------------------------------------------ node sets
    def expand(self, pattern: str) -> list[str]:
        """The members of a node set ``raw/<beamtime>/*``, in scan order (numeric names sort as numbers).

        Raises
        ------
        CatalogError
            When no node matches.
        """
        if not is_node_set(pattern):
            raise CatalogError(f"{pattern!r} is not a node set (it must end with '/*')")
        prefix = pattern[:-1]
        members = [n for n in self.nodes() if n.startswith(prefix)]
        if not members:
            raise CatalogError(f"{self.path}: no node matches {pattern!r}")

        def key(n: str):
            last = n.rsplit("/", 1)[-1]
            return (0, int(last), "") if last.isdigit() else (1, 0, last)

        return sorted(members, key=key)

    # ------------------------------------------------------------------ run nodes
    def run_state(self, node: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(done, status)`` per scan of a run node; None when the node lacks its bookkeeping
        (allocated by an older version and cut short: it must be allocated again)."""
        node = self._require(node)
        group = self._root[node]
        if any(name not in group for name in BOOKKEEPING + ("scan",)):
            return None
        return np.asarray(group["done"][...], dtype=bool), np.asarray(group["status"][...])

    def scans(self, node: str) -> np.ndarray:
        """The ``scan`` coordinate of a node (the scans' identities), without opening its data."""
        node = self._require(node)
        group = self._root[node]
        if "scan" not in group:
            raise CatalogError(f"{self.path}:{node} has no scan coordinate")
        ids = np.asarray(group["scan"][...])
        return ids.astype(object) if ids.dtype.kind in "UOT" else ids

    # ------------------------------------------------------------------ writing
    def _writable(self) -> None:
        if self.mode == "r":
            raise CatalogError(f"{self.path}: opened read-only")

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        """A fresh folder beside the catalog (same file system) to write a node into before it moves in."""
        staging = self.path.parent / f".{self.path.name}.staging"
        staging.mkdir(exist_ok=True)
        tmp = staging / uuid.uuid4().hex
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                staging.rmdir()

    def _move_into_place(self, tmp: Path, node: str, *, replace: bool) -> None:
        for parent in reversed(Path(node).parents[:-1]):  # intermediate groups (raw/<beamtime>)
            _require_group(self._root, str(parent))
        target = self.path / node
        old = None
        if target.exists():
            if not replace:
                raise CatalogError(f"{self.path}: node {node!r} exists already")
            old = tmp.parent / f"{uuid.uuid4().hex}.old"
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def allocate(
        self,
        node: str,
        template: xr.Dataset,
        *,
        chunk: int,
        attrs: Mapping[str, Any],
        runner_managed: bool = True,
    ) -> None:
        """Create ``node`` from a template whose lazy variables are not computed, atomically.

        Numpy-backed variables (coordinates, bookkeeping) are written now;
        dask-backed ones only get their metadata, to be filled by
        :meth:`write_chunk` in whole chunks of ``chunk`` scans. The node is
        made in a staging folder beside the catalog and renamed into place, so
        that a run killed while allocating leaves no half-made node.
        """
        self._writable()
        node = check_node_path(node)
        if node in self:
            raise CatalogError(f"{self.path}: node {node!r} exists already")
        validate(node_kind(node), template, node=node, runner_managed=runner_managed)
        ds = _text_to_object(template)
        ds.attrs = dict(attrs)
        encoding = {}
        for name, var in ds.variables.items():
            enc: dict[str, Any] = {}
            if var.dims and var.dims[0] == "scan":
                enc["chunks"] = (chunk,) + tuple(var.shape[1:])
            if var.dtype.kind in "biu" and name not in ds.coords:
                enc["_FillValue"] = None
            if enc:
                encoding[name] = enc
        with self._staging() as tmp:
            ds.to_zarr(tmp, mode="w-", compute=False, consolidated=False, zarr_format=3, encoding=encoding)
            self._move_into_place(tmp, node, replace=False)

    def grow(self, node: str, scans: np.ndarray, coords: Mapping[str, Any]) -> None:
        """Append ``scans`` (new identities) to a run node along ``scan``, pending, for a run to compute.

        ``coords`` gives the new scans' per-scan coordinates (every per-scan
        coordinate of the node). Only the run's driver grows a node, before
        it submits the new chunks.
        """
        self._writable()
        node = self._require(node)
        group = zarr.open_group(self.path, path=node, mode="r+", zarr_format=3)
        n_old = group["scan"].shape[0]
        new = np.asarray(scans)
        n_new = n_old + len(new)
        tail = {"scan": new, **{k: np.asarray(v) for k, v in coords.items()}, **bookkeeping_tail(len(new))}
        for name, arr in group.arrays():
            dims = arr.metadata.dimension_names or ()
            if not dims or dims[0] != "scan":
                continue
            if name not in tail and name in coords:
                continue
            arr.resize((n_new, *arr.shape[1:]))
            if name in tail:
                value = tail[name]
                arr[n_old:n_new] = value.astype(object) if value.dtype.kind == "U" else value
        group.attrs.update({"n_scans": int(n_new)})  # also renews zarr.json: cached array handles reopen

    def write_chunk(
        self,
        node: str,
        *,
        start: int,
        stop: int,
        variables: Mapping[str, Var],
        local: list[int],
        values: Mapping[str, np.ndarray],
        failed: Mapping[int, str],
        seconds: list[float],
    ) -> None:
        """Write the whole chunk ``start:stop`` of a run node, ``done`` last.

        Parameters
        ----------
        local : list of int
            Positions within the chunk of the scans computed now (row ``p`` of ``values``).
        values : mapping of str to ndarray
            The computed scans' data variables (leading axis ``len(local)``).
        failed : mapping of int to str
            Rows of ``values`` that failed, with the reason; stored as fill values.
        seconds : list of float
            Compute time of each computed scan.

        The scans of the chunk not in ``local`` keep what is stored.
        """
        n = stop - start
        existing = None
        if len(local) < n:
            stored = self.open(node, chunks=None).isel(scan=slice(start, stop))
            existing = stored.drop_vars(list(stored.coords))[[*variables, *BOOKKEEPING]].load()
        chunk = chunk_dataset(variables=variables, n=n, local=local, values=values, failed=failed,
                              seconds=seconds, existing=existing)
        self.write_region(node, chunk, scans=slice(start, stop), last=("done",))

    def write_region(self, node: str, values: xr.Dataset, *, scans: slice, last: tuple[str, ...] = ()) -> None:
        """Write whole chunks along ``scan``: ``values`` holds every scan of ``scans``.

        ``scans`` must start and end on chunk boundaries (or the end of the
        array): zarr writes from several processes are only safe for whole
        chunks. Variables named in ``last`` are written after all the others
        (a completion marker such as ``done``).
        """
        self._writable()
        node = check_node_path(node)
        arrays = self._region_arrays(node)
        n = arrays["scan"].shape[0]
        start, stop, step = scans.indices(n)
        if step != 1:
            raise CatalogError(f"{self.path}:{node}: region {scans} must be contiguous")
        names = [v for v in values.data_vars if v not in last] + [v for v in last if v in values.data_vars]
        for name in names:
            var = values[name]
            if not var.dims or var.dims[0] != "scan":
                raise CatalogError(f"{self.path}:{node}: {name!r} is not per scan; only per-scan data is written")
            if name not in arrays:
                raise CatalogError(f"{self.path}:{node}: no variable {name!r} was allocated")
            arr = arrays[name]
            chunk = arr.chunks[0]
            if start % chunk or (stop % chunk and stop != n):
                raise CatalogError(
                    f"{self.path}:{node}: region {start}:{stop} of {name!r} is not aligned to its chunks of "
                    f"{chunk} scans; unaligned writes from several workers lose data"
                )
            data = np.asarray(var.values)
            if data.dtype.kind == "U":
                data = data.astype(object)
            # zarr directly: the allocation fixed names, dtypes and encodings, and xarray's to_zarr
            # would re-read and re-check them on every task
            arr[start:stop] = data

    def _region_arrays(self, node: str) -> dict[str, zarr.Array]:
        """The node's arrays, cached per process for as long as the node is not allocated anew."""
        try:
            token = (self.path / node / "zarr.json").stat().st_mtime_ns
        except FileNotFoundError:
            raise NodeNotFoundError(f"{self.path}: no node {node!r}") from None
        key = (str(self.path.resolve()), node, token)
        arrays = _ARRAYS.get(key)
        if arrays is None:
            group = zarr.open_group(self.path, path=node, mode="r+", zarr_format=3)
            arrays = dict(group.arrays())
            if len(_ARRAYS) > 64:
                _ARRAYS.clear()
            _ARRAYS[key] = arrays
        return arrays

    def update_attrs(self, node: str, attrs: Mapping[str, Any]) -> None:
        """Merge ``attrs`` into a node's attributes. Only the run's driver calls this."""
        self._writable()
        node = self._require(node)
        group = zarr.open_group(self.path, path=node, mode="r+", zarr_format=3)
        group.attrs.update(dict(attrs))

    def write(
        self,
        node: str,
        ds: xr.Dataset,
        *,
        attrs: Mapping[str, Any],
        overwrite: bool = False,
        encoding: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a whole node at once (models, training sets, raw scans), schema checked first.

        The node is written into a staging folder beside the catalog and moved
        into place in one rename, so that a reader, or a writer killed
        halfway, never sees half a node. Its ``content_hash`` attribute is
        computed here (:func:`~cdiplatform.catalog.hashing.dataset_hash`).
        """
        self._writable()
        node = check_node_path(node)
        attrs = {**dict(attrs), "content_hash": dataset_hash({str(k): v.values for k, v in ds.variables.items()})}
        validate(node_kind(node), xr.Dataset(ds.data_vars, ds.coords, attrs=attrs), node=node)
        if node in self and not overwrite:
            raise CatalogError(f"{self.path}: node {node!r} exists already")
        out = _text_to_object(ds)
        out.attrs = attrs
        with self._staging() as tmp:
            out.to_zarr(tmp, mode="w-", consolidated=False, zarr_format=3, encoding=dict(encoding or {}))
            self._move_into_place(tmp, node, replace=overwrite)

    def group_attrs(self, path: str) -> dict[str, Any]:
        """Attributes of a group above the nodes (``raw/<beamtime>``), empty if it does not exist."""
        try:
            return dict(self._root[path.strip("/")].attrs)
        except KeyError:
            return {}

    def update_group_attrs(self, path: str, attrs: Mapping[str, Any]) -> None:
        """Merge ``attrs`` into a group above the nodes, creating it. Only a driver calls this."""
        self._writable()
        top = path.strip("/").split("/")[0]
        if top not in KINDS:
            raise CatalogError(f"{path!r} is not in the catalog layout")
        _require_group(self._root, path.strip("/")).attrs.update(dict(attrs))

    def copy_from(self, source: Catalog, node: str, *, overwrite: bool = False) -> None:
        """Copy a whole node (data, coordinates, attributes, provenance) from another catalog."""
        ds = source.open(node, chunks=None).load()
        attrs = source.attrs(node)
        for var in ds.variables.values():
            var.encoding = {}
        attrs["history"] = (attrs.get("history", "") + "\n" if attrs.get("history") else "") + (
            f"copied from {source.path}:{node}")
        self.write(node, ds, attrs=attrs, overwrite=overwrite)

    def remove(self, node: str) -> None:
        """Delete a node and everything below it (moved out of the catalog in one rename first)."""
        self._writable()
        node = self._require(node)
        with self._staging() as tmp:
            os.rename(self.path / node, tmp)


def open_catalog(path: str | os.PathLike, *, mode: Mode = "r") -> Catalog:
    """Open the catalog at ``path``.

    Parameters
    ----------
    path : path-like
        A ``.zarr`` directory holding a catalog.
    mode : {"r", "a"}
        ``"r"`` (default) to read; ``"a"`` to read and write, creating the
        catalog when the path does not exist yet.

    Raises
    ------
    CatalogError
        When the path holds something that is not a catalog.
    """
    if mode not in ("r", "a"):
        raise CatalogError(f"mode must be 'r' or 'a', not {mode!r}")
    return Catalog(path, mode=mode)


def is_node_set(node: str) -> bool:
    """Whether ``node`` names a node set, ``raw/<beamtime>/*``: every raw scan of a beamtime, as one input."""
    return node.endswith("/*")


def _require_group(root: zarr.Group, path: str) -> zarr.Group:
    """The group at ``path`` below ``root``, created if missing, safe when several writers race.

    Workers writing ``raw/<beamtime>/<scan>`` nodes of a new beamtime all
    create ``raw/<beamtime>``; zarr's ``require_group`` checks and then creates,
    so a writer that loses the race between the two finds the group made by
    another and must take it rather than fail.
    """
    try:
        return root.require_group(path)
    except ContainsGroupError:
        return root[path]
