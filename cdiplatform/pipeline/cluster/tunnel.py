"""The SSH tunnel that brings a dashboard listening on loopback to the user's own machine."""

from __future__ import annotations

import getpass
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from cdiplatform.pipeline.cluster.handle import ClusterHandle

__all__ = ["tunnel_command"]

_ANY_OR_LOOPBACK = ("", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost")


def tunnel_command(handle: ClusterHandle, *, local_port: int = 8787, user: str | None = None,
                   host: str | None = None) -> str:
    """The ``ssh`` command that forwards the cluster's dashboard to ``localhost:local_port``.

    With SLURM the scheduler, and so the dashboard, runs where ``cdip`` was
    started (a login node), on loopback by default; from one's own machine::

        ssh -N -L 8787:127.0.0.1:<port> <user>@<login node>

    then open ``http://localhost:8787/status``.

    Parameters
    ----------
    handle : ClusterHandle
        A connected cluster with a dashboard.
    local_port : int
        Port on the user's machine.
    user : str, optional
        Login name; default the current user's.
    host : str, optional
        Machine to ``ssh`` to; default this machine's fully qualified name
        (for a scheduler at an address, that address's host).

    Returns
    -------
    str
        The command; empty when the cluster has no dashboard.
    """
    if not handle.dashboard_link:
        return ""
    link = urlparse(handle.dashboard_link)
    bound = link.hostname or ""
    target = "127.0.0.1" if bound in _ANY_OR_LOOPBACK else bound
    if host is None:
        if handle.kind == "address":
            host = urlparse(handle.client.scheduler.address).hostname or _this_host()
        else:
            host = _this_host()
    if ":" in target:
        target = f"[{target}]"
    return f"ssh -N -L {local_port}:{target}:{link.port} {user or getpass.getuser()}@{host}"


def _this_host() -> str:
    """This machine's fully qualified name, or its host name where that resolves to localhost only."""
    fqdn = socket.getfqdn()
    return socket.gethostname() if fqdn.split(".")[0] in ("localhost", "") else fqdn
