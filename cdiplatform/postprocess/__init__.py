"""Post-processing of reconstructions: orthogonal frame in nm, displacement, strain, resolution, export.

Science code only: NumPy arrays in, NumPy arrays out, batched along the first
axis (``scan``) where the grids allow; no dask, zarr or xarray. See
docs/postprocess.md for the frames, sign conventions and definitions.
"""

from cdiplatform.postprocess.batch import PostprocessResult, postprocess_scans
from cdiplatform.postprocess.export import write_cxi, write_vti
from cdiplatform.postprocess.orthogonal import (
    FRAMES,
    OrthogonalGrid,
    conjugate_positions,
    frame_rotation,
    orthogonal_grid,
    real_space_basis,
    to_orthogonal,
    voxel_sizes_nm,
)
from cdiplatform.postprocess.phase import (
    displacement_from_phase,
    masked_gradient,
    mean_strain,
    remove_phase_ramp,
    strain_along,
    unwrap_phase_in_support,
)
from cdiplatform.postprocess.resolution import (
    ResolutionCurve,
    binomial_split,
    fourier_shell_correlation,
    max_shells,
    orthogonal_q_step,
    prtf,
    prtf_of_average,
)

__all__ = [
    "FRAMES",
    "OrthogonalGrid",
    "PostprocessResult",
    "ResolutionCurve",
    "binomial_split",
    "conjugate_positions",
    "displacement_from_phase",
    "fourier_shell_correlation",
    "frame_rotation",
    "masked_gradient",
    "max_shells",
    "mean_strain",
    "orthogonal_grid",
    "orthogonal_q_step",
    "postprocess_scans",
    "prtf",
    "prtf_of_average",
    "real_space_basis",
    "remove_phase_ramp",
    "strain_along",
    "to_orthogonal",
    "unwrap_phase_in_support",
    "voxel_sizes_nm",
    "write_cxi",
    "write_vti",
]
