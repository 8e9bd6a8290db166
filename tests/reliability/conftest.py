"""The long fault experiments run only when asked for: `pytest -m long tests/reliability`."""

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "long" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="a long fault experiment: run with -m long (docs/RELIABILITY.md)")
    for item in items:
        if item.get_closest_marker("long") is not None:
            item.add_marker(skip)
