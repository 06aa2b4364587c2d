"""Shared helpers for the deployment-artefact tests (all offline)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers import ROOT

DEPLOY = os.path.join(ROOT, "deploy")
INFRA = os.path.join(ROOT, "infrastructure")


def tool(name: str) -> str:
    """Path of a command-line validator, or skip the test saying how to get it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install the test extra: .[test])")
    return path


def repo_path(*parts: str) -> str:
    return os.path.join(ROOT, *parts)
