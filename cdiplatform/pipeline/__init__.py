"""The pipeline: the only piece that knows Dask.

Job files name stages (:mod:`cdiplatform.pipeline.stages`); the runner maps
each stage over chunks of scans on a cluster (:mod:`.cluster`), writing whole
chunks into the catalog and resuming where a run stopped.
"""

from cdiplatform.pipeline.job import Job, JobError, load_job
from cdiplatform.pipeline.runner import StageReport, plan_job, run_job
from cdiplatform.pipeline.stage import (
    ChunkResult,
    Input,
    Plan,
    Stage,
    TaskContext,
    TaskStage,
    Var,
    config_field,
    register,
)

__all__ = ["ChunkResult", "Input", "Job", "JobError", "Plan", "Stage", "StageReport", "TaskContext", "TaskStage",
           "Var", "config_field", "load_job", "plan_job", "register", "run_job"]
