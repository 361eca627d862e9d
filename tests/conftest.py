"""Every test gets its own empty Minari datasets directory (MINARI_DATASETS_PATH)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def minari_datasets_path(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("minari_datasets")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root
