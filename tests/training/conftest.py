"""Fixtures of the training-package tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def env(tmp_path, model_root):
    """What a training subprocess needs: the stand-in models, and a home of the test's own."""
    return {"SWEEP_MODEL_ROOT": str(model_root), "SWEEP_HOME": str(tmp_path / "home")}
