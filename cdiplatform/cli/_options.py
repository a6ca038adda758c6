"""The cluster options that every command running a job shares (``cdip run``, ``reprocess``, ``ingest``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

__all__ = ["ClusterOpt", "ThreadsOpt", "WorkersOpt"]

ClusterOpt = Annotated[str, typer.Option(help="local | slurm | slurm:PATH.yaml[,PATH.yaml] | tcp://ADDRESS")]
WorkersOpt = Annotated[Optional[int], typer.Option(help="worker processes (local) or SLURM jobs")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="local: torch and BLAS threads per worker (default: its "
                                                        "share of the cores)")]
