"""Suite-wide settings: find the shared vectors, run `sevm` from this interpreter, and
refuse an empty run."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Subprocess tests call `sevm`; make it the one installed beside this interpreter
# (a virtual environment's bin/), whatever PATH the caller had.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
# Keep the grammar cache and the digest cache of test runs away from the user's.
os.environ.setdefault("XDG_CACHE_HOME", str(REPO / ".pytest_cache" / "xdg"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared() -> Path:
    path = Path(os.environ.get("SEVM_SHARED", REPO.parent / "shared"))
    if not (path / "vectors").is_dir():
        pytest.fail(f"shared vectors not found at {path} (set SEVM_SHARED)")
    return path


def pytest_sessionfinish(session, exitstatus):
    # "no tests collected" must never pass as a green run
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED or session.testscollected == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
