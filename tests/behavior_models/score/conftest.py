"""One torch thread for the score tests: their many small solver steps oversubscribe the
shared cores with more (measured: a 16 s fit took 290 s under load with the default count)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
