"""Every test gets its own empty Minari datasets directory (MINARI_DATASETS_PATH) and starts from
seeded global generators; modules that fit small networks opt into ``one_torch_thread``."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def minari_datasets_path(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("minari_datasets")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _flushes_denormals() -> bool:
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


@pytest.fixture(autouse=True)
def restore_torch_globals():
    """The thread count and flush-to-zero are process-wide, and `rl train`, `Run.build` and every
    fit set them; restore both after each test so no test runs under another test's settings."""
    threads, flush = torch.get_num_threads(), _flushes_denormals()
    yield
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush)


@pytest.fixture(autouse=True)
def isolated_global_rngs():
    """Each test starts torch's and NumPy's global generators from seed 0 and leaves them as it
    found them: the library's fits and `Run.build` reseed them, so without this a test drawing
    unseeded inputs would see draws that depend on which tests ran before it."""
    numpy_state = np.random.get_state()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        np.random.seed(0)
        yield
    np.random.set_state(numpy_state)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for the module, restored afterwards: small networks gain nothing from
    more, and on a shared CPU the idle-spinning threads make each step many times slower
    (measured: a 16 s score fit took 290 s under load with the default count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
