import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakes import FakeStudio  # noqa: E402


@pytest.fixture
def fake():
    return FakeStudio()
