"""Flags: every flag has a baseline value, and the runtime flags take effect in the process."""

from __future__ import annotations

import os
import sys
import weakref
from pathlib import Path

import pytest
from provgraph.config import (
    DEFAULT_FLAGS,
    FLAG_CHOICES,
    apply_gc_flag,
    apply_runtime_flags,
    baseline_flags,
    validate_flags,
)
from provgraph.errors import InvalidArgumentError
from provgraph.store import Store, Writer


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
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    finally:
        sys.setswitchinterval(before)


def test_writer_priority_flag_sets_the_writer_threads_nice_value(tmp_path: Path) -> None:
    """runtime.writer_priority=high runs the writer thread 10 nice levels above the process where it may
    (root or CAP_SYS_NICE); otherwise the writer stays as it is and says so. normal puts it back."""
    store = Store(tmp_path / "data")
    writer = Writer(store)
    tid = writer._thread.native_id
    assert tid is not None
    try:
        process = os.getpriority(os.PRIO_PROCESS, os.getpid())
        assert writer.base_nice == writer.nice == process == os.getpriority(os.PRIO_PROCESS, tid)
        apply_runtime_flags(DEFAULT_FLAGS, writer)
        may_raise = sys.platform.startswith("linux") and os.geteuid() == 0
        expected = process - 10 if may_raise else process
        assert writer.nice == expected == os.getpriority(os.PRIO_PROCESS, tid)
        apply_runtime_flags({**DEFAULT_FLAGS, "runtime.writer_priority": "normal"}, writer)
        assert writer.nice == process == os.getpriority(os.PRIO_PROCESS, tid)
        assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == process  # only the writer thread moved
        assert writer.coalesce  # runtime.write_coalesce=turn, the default
        apply_runtime_flags({**DEFAULT_FLAGS, "runtime.write_coalesce": "off"}, writer)
        assert not writer.coalesce
        apply_runtime_flags(DEFAULT_FLAGS, writer)
        assert writer.coalesce
        assert writer.window  # runtime.group_window=adaptive, the default
        apply_runtime_flags({**DEFAULT_FLAGS, "runtime.group_window": "off"}, writer)
        assert not writer.window and writer.window_for(10, idle=False) == 0.0
        apply_runtime_flags(DEFAULT_FLAGS, writer)
        assert writer.window and writer.window_for(10, idle=False) > 0.0
        assert writer.submit(lambda txn: (txn.put(b"k", b"v", db=store.db("meta")), None)).result(timeout=10)
        with store.read() as txn:
            assert txn.get(b"k", db=store.db("meta")) == b"v"  # and it still writes
    finally:
        writer.close()
        store.close()


class _Node:
    self_ref: object = None


def test_gc_flag_freezes_and_releases_the_heap() -> None:
    """runtime.gc=frozen collects, then moves every live object to the permanent generation: a full
    collection no longer walks them (nor frees a cycle among them); what is made later is collected as
    usual. default moves them back, and the frozen garbage goes."""
    import gc

    assert gc.get_freeze_count() == 0
    old = _Node()
    old.self_ref = old
    old_ref = weakref.ref(old)
    try:
        apply_gc_flag(DEFAULT_FLAGS)
        assert DEFAULT_FLAGS["runtime.gc"] == "frozen"
        assert gc.get_freeze_count() > 1000
        new = _Node()
        new.self_ref = new
        new_ref = weakref.ref(new)
        del old, new
        gc.collect()
        assert new_ref() is None  # made after the freeze: collected
        assert old_ref() is not None  # frozen: left alone
    finally:
        apply_gc_flag({**DEFAULT_FLAGS, "runtime.gc": "default"})
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert old_ref() is None
