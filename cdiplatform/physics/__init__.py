"""Physics shared by every method: the forward model and its conventions.

Science code only: functions take and return NumPy arrays or torch tensors,
batched along the leading axes.

- :mod:`.fft`: the centred, unitary far field (zero frequency at ``N // 2``);
- :mod:`.bragg`: the Bragg phase ``phi = -G . u`` of a displacement field;
- :mod:`.voxelize`: atoms onto a grid (density and mean displacement);
- :mod:`.resample`: DCT resampling and the oversampling estimate;
- :mod:`.align`: shift, twin, constant phase and phase ramp between two objects;
- :mod:`.metrics`: errors against the data and against the truth;
- :mod:`.grids`: the model grid of a network against the phasing grid (the
  record and the mapping both ways), centred zero padding and cropping;
- :mod:`.support`: a starting support from an amplitude, connected pieces;
- :mod:`.compare`: the one comparison of every method with the truth or a
  reference method (errors, support overlap);
- :mod:`.quality`: the quality flag of a scan and method (good, twin, failed).
"""

from cdiplatform.physics.align import (
    align,
    find_shift,
    register,
    remove_phase_offset,
    remove_phase_ramp,
    shift_object,
    twin,
)
from cdiplatform.physics.bragg import bragg_phase, reciprocal_vector
from cdiplatform.physics.compare import Comparison, ComparisonRules, compare_objects
from cdiplatform.physics.fft import (
    centre_index,
    diffraction_intensity,
    far_field,
    from_far_field,
    object_intensity,
)
from cdiplatform.physics.grids import GridRelation, centred_crop, model_to_phasing, phasing_to_model, zero_pad
from cdiplatform.physics.metrics import (
    amplitude_error,
    chi_square,
    compare_with_truth,
    phase_error,
    poisson_llk,
)
from cdiplatform.physics.quality import QualityThresholds, quality_flag
from cdiplatform.physics.resample import dct_resample, oversampling_ratio
from cdiplatform.physics.support import support_components, support_from_amplitude
from cdiplatform.physics.voxelize import voxelize_points

__all__ = [
    "Comparison",
    "ComparisonRules",
    "GridRelation",
    "QualityThresholds",
    "align",
    "amplitude_error",
    "bragg_phase",
    "centre_index",
    "centred_crop",
    "chi_square",
    "compare_objects",
    "compare_with_truth",
    "dct_resample",
    "diffraction_intensity",
    "far_field",
    "find_shift",
    "from_far_field",
    "model_to_phasing",
    "object_intensity",
    "oversampling_ratio",
    "phase_error",
    "phasing_to_model",
    "poisson_llk",
    "quality_flag",
    "reciprocal_vector",
    "register",
    "remove_phase_offset",
    "remove_phase_ramp",
    "shift_object",
    "support_components",
    "support_from_amplitude",
    "twin",
    "voxelize_points",
    "zero_pad",
]
