"""The support voxels of each scan, packed into the rows of one padded tensor.

Refinement moves only the voxels inside each scan's support, a few percent of
a zero-padded grid (about 1-4% for the 64^3 gold crystals). Keeping the
optimizer's vectors (parameters, gradients, Adam's moments, L-BFGS's
history) packed, one row of ``P`` entries per scan, ``P`` the largest support
of the batch, makes every elementwise update and dot product cost a few
percent of a full-grid pass; only the forward model sees the full grid.

Invariant: the ``P - n_s`` pad entries of scan ``s`` hold zeros, in every
packed tensor (:meth:`SupportPacking.pack` writes zeros there, and the
optimizers keep zeros zero), so per-scan sums over a row equal the sums over
the scan's own ``n_s`` entries.
"""

from __future__ import annotations

import torch

__all__ = ["SupportPacking"]


class SupportPacking:
    """Indices of the support voxels of each scan, in increasing order, padded to the batch's largest support.

    Parameters
    ----------
    support : torch.Tensor, bool, ``(S, *grid)``

    Attributes
    ----------
    index : torch.Tensor, int64, ``(S, P)``
        Flat voxel index of each packed entry (0 on pads).
    valid : torch.Tensor, bool, ``(S, P)``
        False on pads.
    """

    def __init__(self, support: torch.Tensor) -> None:
        self.grid = tuple(support.shape[1:])
        flat = support.reshape(support.shape[0], -1)
        counts = flat.sum(dim=1)
        width = max(int(counts.max()), 1) if flat.shape[0] else 1
        order = torch.argsort((~flat).to(torch.uint8), dim=1, stable=True)[:, :width]  # support voxels first
        self.valid = torch.arange(width, device=support.device) < counts[:, None]
        self.index = torch.where(self.valid, order, 0)

    @classmethod
    def _from(cls, index: torch.Tensor, valid: torch.Tensor, grid: tuple[int, ...]) -> SupportPacking:
        new = cls.__new__(cls)
        new.index, new.valid, new.grid = index, valid, grid
        return new

    def rows(self, rows: torch.Tensor | None) -> SupportPacking:
        """The packing of the scans ``rows`` (positions, or a bool mask; None: all)."""
        if rows is None:
            return self
        return SupportPacking._from(self.index[rows], self.valid[rows], self.grid)

    def pack(self, full: torch.Tensor) -> torch.Tensor:
        """``(S, *grid, C)`` real -> ``(S, P, C)``, zeros on pads."""
        S, C = full.shape[0], full.shape[-1]
        flat = full.reshape(S, -1, C)
        out = flat.gather(1, self.index.unsqueeze(-1).expand(-1, -1, C))
        return out.mul_(self.valid.unsqueeze(-1))

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """``(S, P, C)`` real (zeros on pads) -> ``(S, *grid, C)``, zeros outside the support."""
        S, _, C = packed.shape
        size = 1
        for n in self.grid:
            size *= n
        full = torch.zeros((S, size, C), dtype=packed.dtype, device=packed.device)
        # pads add their zeros to voxel 0: exact, whatever order the additions take
        full.scatter_add_(1, self.index.unsqueeze(-1).expand(-1, -1, C), packed)
        return full.reshape((S,) + self.grid + (C,))
