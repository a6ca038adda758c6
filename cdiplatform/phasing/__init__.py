"""Phase retrieval: batched ER / HIO / RAAR with shrink-wrap, many starts, selection; and gradient refinement.

Science code only: takes NumPy arrays or torch tensors (batched along the
first axis, ``scan``), runs in torch on the data's device, returns NumPy arrays.
"""

from cdiplatform.phasing.algorithm import AlgorithmSequence, parse_algorithm
from cdiplatform.phasing.batching import auto_batch_size
from cdiplatform.phasing.blur import resolve_blur
from cdiplatform.phasing.recipes import RECIPES, recipe
from cdiplatform.phasing.refine import RefineResult, refine
from cdiplatform.phasing.refine_settings import RefineSettings, RefineShrinkWrap
from cdiplatform.phasing.retrieval import PhasingResult, phase_retrieval
from cdiplatform.phasing.settings import PhasingSettings, ShrinkWrap, TwinRemoval

__all__ = [
    "RECIPES",
    "AlgorithmSequence",
    "PhasingResult",
    "PhasingSettings",
    "RefineResult",
    "RefineSettings",
    "RefineShrinkWrap",
    "ShrinkWrap",
    "TwinRemoval",
    "auto_batch_size",
    "parse_algorithm",
    "phase_retrieval",
    "recipe",
    "refine",
    "resolve_blur",
]
