"""The handle that :func:`~cdiplatform.pipeline.cluster.connect` returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ClusterHandle"]


@dataclass
class ClusterHandle:
    """A connected Dask client and the cluster it started, if any.

    Use it as a context manager, or call :meth:`close`.

    Attributes
    ----------
    client : distributed.Client
        The connected client.
    cluster : distributed.deploy.Cluster or None
        The cluster :func:`connect` started (None when connected to an address).
    kind : {"local", "slurm", "address"}
        Which kind of spec was given.
    dashboard_link : str or None
        URL of the scheduler's dashboard, None when it has none.
    """

    client: Client
    cluster: Any | None
    kind: Literal["local", "slurm", "address"]
    dashboard_link: str | None

    def close(self) -> None:
        """Close the client, then the cluster (which cancels SLURM jobs)."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
