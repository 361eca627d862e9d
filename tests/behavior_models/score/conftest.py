"""One torch thread for the score tests: their many small solver steps oversubscribe the
shared cores with more (the fixture is tests/conftest.py's ``one_torch_thread``)."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread_per_module(one_torch_thread):
    yield
