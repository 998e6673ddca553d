"""Flags: every flag has a baseline value, and the runtime flags take effect in the process."""

from __future__ import annotations

import sys

import pytest
from provgraph.config import (
    DEFAULT_FLAGS,
    FLAG_CHOICES,
    apply_runtime_flags,
    baseline_flags,
    validate_flags,
)
from provgraph.errors import InvalidArgumentError


def test_every_flag_has_an_optimized_default_and_a_baseline() -> None:
    assert set(baseline_flags()) == set(FLAG_CHOICES) == set(DEFAULT_FLAGS)
    for name, value in baseline_flags().items():
        assert value in FLAG_CHOICES[name] and value != DEFAULT_FLAGS[name], name
    with pytest.raises(InvalidArgumentError):
        validate_flags({"runtime.gil_switch": "turbo"})


def test_gil_switch_flag_sets_the_switch_interval() -> None:
    before = sys.getswitchinterval()
    try:
        apply_runtime_flags({**DEFAULT_FLAGS, "runtime.gil_switch": "default"})
        assert sys.getswitchinterval() == pytest.approx(0.005)
        apply_runtime_flags(DEFAULT_FLAGS)
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    finally:
        sys.setswitchinterval(before)
