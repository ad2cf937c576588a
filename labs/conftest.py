"""nbval runs every lab; they start real clusters, so they count as slow integration tests
(`pytest -m "not slow"` skips them)."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.integration)
