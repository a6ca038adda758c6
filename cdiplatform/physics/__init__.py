"""Physics shared by every method: the forward model and its conventions.

Science code only: functions take and return NumPy arrays or torch tensors,
batched along the leading axes.

- :mod:`.fft`: the centred, unitary far field (zero frequency at ``N // 2``);
- :mod:`.bragg`: the Bragg phase ``phi = -G . u`` of a displacement field;
- :mod:`.voxelize`: atoms onto a grid (density and mean displacement);
- :mod:`.resample`: DCT resampling and the oversampling estimate;
- :mod:`.align`: shift, twin, constant phase and phase ramp between two objects;
- :mod:`.metrics`: errors against the data and against the truth.
"""

from cdiplatform.physics.align import (
    align,
    find_shift,
    remove_phase_offset,
    remove_phase_ramp,
    shift_object,
    twin,
)
from cdiplatform.physics.bragg import bragg_phase, reciprocal_vector
from cdiplatform.physics.fft import centre_index, diffraction_intensity, far_field, from_far_field
from cdiplatform.physics.metrics import (
    amplitude_error,
    chi_square,
    compare_with_truth,
    phase_error,
    poisson_llk,
)
from cdiplatform.physics.resample import dct_resample, oversampling_ratio
from cdiplatform.physics.voxelize import voxelize_points

__all__ = [
    "align",
    "amplitude_error",
    "bragg_phase",
    "centre_index",
    "chi_square",
    "compare_with_truth",
    "dct_resample",
    "diffraction_intensity",
    "far_field",
    "find_shift",
    "from_far_field",
    "oversampling_ratio",
    "phase_error",
    "poisson_llk",
    "reciprocal_vector",
    "remove_phase_offset",
    "remove_phase_ramp",
    "shift_object",
    "twin",
    "voxelize_points",
]
