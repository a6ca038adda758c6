"""The ``cdip`` command (:mod:`cdiplatform.cli.main`)."""

__all__ = ["app", "main"]


def __getattr__(name: str):
    # loaded on first use, so that ``python -m cdiplatform.cli.main`` does not import the module twice
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("cdiplatform.cli.main"), name)
    raise AttributeError(f"module 'cdiplatform.cli' has no attribute {name!r}")
