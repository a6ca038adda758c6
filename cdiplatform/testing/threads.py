"""A pytest fixture that runs each test on one torch thread.

Import it into a ``conftest.py`` to apply it to every test of that folder
(it is ``autouse``)::

    from cdiplatform.testing.threads import one_torch_thread  # noqa: F401

Small tensors are faster on one thread, results do not depend on the core
count, and tests running beside each other do not oversubscribe the machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

__all__ = ["one_torch_thread"]


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Set ``torch.set_num_threads(1)`` for the test, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
