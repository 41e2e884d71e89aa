"Shared pytest fixtures: paths to the repository and to `../shared` (skipped with a reason when absent)."
import os
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('SR3XCT_SHARED', REPO.parent / 'shared'))


@pytest.fixture(scope='session')
def repo() -> Path:
    return REPO


@pytest.fixture(scope='session')
def shared() -> Path:
    "The `../shared` folder beside the clone (fixtures and real data); tests that need it skip when it is absent."
    if not SHARED.is_dir():
        pytest.skip(f'{SHARED} is absent (a fresh clone has no ../shared); set SR3XCT_SHARED to run this test')
    return SHARED
