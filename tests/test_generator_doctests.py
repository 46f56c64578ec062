"""The runnable examples in the test_data modules' docstrings."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "test_data.catalogue",
    "test_data.cli",
    "test_data.generator",
    "test_data.geography",
    "test_data.hostile",
    "test_data.rate",
    "test_data.samples",
    "test_data.spec",
    "test_data.timeline",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
