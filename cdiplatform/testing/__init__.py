"""Helpers for testing cdiplatform and code built on it (like ``zarr.testing``).

- :func:`require` skips a test whose precondition is missing, but fails it
  under continuous integration (``CI=true``), where every precondition must hold;
- :mod:`cdiplatform.testing.conformance`: :class:`StageTests`, the properties
  every chunk stage must have, checked on the real runner, and
  :func:`assert_runs_identical`;
- :mod:`cdiplatform.testing.slurm` starts a real single-node SLURM for tests
  of the SLURM path (imported only when asked for);
- :mod:`cdiplatform.testing.stages`: small stages for runner tests;
- :mod:`cdiplatform.testing.cohere_preprocessing`: the peer's preprocessing
  of scan 54, an oracle for phasing benchmarks.
- :mod:`cdiplatform.testing.beamtime` writes a synthetic beamtime as a real one (SPEC file,
  TIFF frames, fields).
- :mod:`cdiplatform.testing.browser`: a real headless Chromium driven over the DevTools
  pipe (:func:`~cdiplatform.testing.browser.ensure_chromium` installs Debian's ``chromium``
  when missing and root), for tests of HTML output;
- :mod:`cdiplatform.testing.report_catalog` writes a small catalog in the layouts the
  report reads (benchmark, results, post-processing, collection).
- :mod:`cdiplatform.testing.page_faults`: the page faults of the engine's FFT pair, to see
  whether a process reuses freed temporaries.
"""

from cdiplatform.testing.require import in_ci, require

__all__ = ["SlurmError", "SlurmInfo", "assert_runs_identical", "ensure_slurm", "in_ci", "require", "stop_slurm"]


def __getattr__(name: str):
    if name in ("SlurmError", "SlurmInfo", "ensure_slurm", "stop_slurm"):
        from cdiplatform.testing import slurm

        return getattr(slurm, name)
    if name in ("StageTests", "assert_runs_identical"):
        from cdiplatform.testing import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module 'cdiplatform.testing' has no attribute {name!r}")
