import pytest

from tests.engine.helpers import PAGE


@pytest.fixture
def demo_pricing(settings):
    """The demo pricing the worker processes get too (they read it from the environment)."""
    for key, value in PAGE.items():
        setattr(settings, key, value)
