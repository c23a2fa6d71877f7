from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # reference_loops and helpers

REPO = TESTS.parent
JOBS_MP4 = REPO.parent / "shared" / "data" / "jobs.mp4"


@pytest.fixture(scope="session")
def jobs_mp4() -> Path:
    if not JOBS_MP4.exists():
        pytest.skip(f"test clip {JOBS_MP4} is not present")
    return JOBS_MP4
