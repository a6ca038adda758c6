"""The ``cdip`` command."""

from cdiplatform.cli.main import app, main

__all__ = ["app", "main"]
