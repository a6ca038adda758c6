"""Physics shared by every method: the forward model and its conventions.

Science code only: functions take and return NumPy arrays or torch tensors,
batched along the leading axes.
"""

from cdiplatform.physics.fft import centre_index, diffraction_intensity, far_field, from_far_field

__all__ = ["centre_index", "diffraction_intensity", "far_field", "from_far_field"]
