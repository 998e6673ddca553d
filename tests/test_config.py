"""The flag registry: every flag fully described, both profiles, all-or-nothing updates, subscribers, and
the same registry through `provgraph flags` and GET/PUT /v1/admin/flags."""

from __future__ import annotations

import gc
import os
import sys
import weakref
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import PROFILE, Server
from provgraph.cli import main
from provgraph.errors import BadRequestError, ConflictError
from provgraph.flags import (
    FLAGS,
    KINDS,
    PROFILES,
    SPECS,
    FlagRegistry,
    apply_gc,
    profile_values,
    subscribe_process,
    subscribe_writer,
)
from provgraph.store import Store, Writer

FIELDS = {"value", "default", "baseline", "choices", "startup", "kind", "description"}


def test_every_flag_is_fully_described() -> None:
    """A flag without a description, a kind among the five, or a baseline among its choices fails here."""
    assert len(SPECS) == len(FLAGS) and FLAGS
    assert set(KINDS) == {"speed", "durability", "storage", "fairness", "cost"}
    for f in FLAGS:
        assert f.kind in KINDS, f.name
        assert f.description.strip() and "\n" not in f.description, f.name
        assert len(f.choices) >= 2 and len(set(f.choices)) == len(f.choices), f.name
        assert f.default in f.choices and f.baseline in f.choices, f.name
        # the baseline is the rollback: it differs from the optimized value, except for a flag that
        # trades durability, whose durable choice is the value of both profiles
        assert f.baseline != f.default or f.kind == "durability", f.name


def test_preflight_ack_defaults_to_durable_in_both_profiles() -> None:
    ack = SPECS["actions.preflight_ack"]
    assert ack.kind == "durability" and {"queued", "durable", "applied"} == set(ack.choices)
    assert profile_values("optimized")["actions.preflight_ack"] == "durable"
    assert profile_values("baseline")["actions.preflight_ack"] == "durable"


def test_profiles_and_overrides() -> None:
    optimized, baseline = profile_values("optimized"), profile_values("baseline")
    assert optimized == {f.name: f.default for f in FLAGS} and baseline == {f.name: f.baseline for f in FLAGS}
    assert FlagRegistry().values() == optimized and FlagRegistry().profile == "optimized"
    assert FlagRegistry("baseline").values() == baseline and FlagRegistry("baseline").profile == "baseline"
    mixed = FlagRegistry("baseline", {"graph.engine": "csr"})
    assert mixed.profile == "custom" and mixed["graph.engine"] == "csr" and mixed["policy.cache"] == "off"
    # back to every baseline value: the profile is baseline again
    mixed.update({"graph.engine": "lmdb"})
    assert mixed.profile == "baseline"
    with pytest.raises(BadRequestError):
        FlagRegistry("fastest")
    with pytest.raises(BadRequestError):
        FlagRegistry("optimized", {"graph.engine": "fast"})


def test_update_is_all_or_nothing() -> None:
    flags = FlagRegistry()
    seen: list[str] = []
    flags.subscribe("policy.cache", seen.append)
    assert seen == ["on"]  # called at once with the current value
    before = flags.values()
    for bad, exc, status in (({"policy.cache": "off", "nope.flag": "on"}, BadRequestError, 400),
                             ({"policy.cache": "off", "graph.engine": "fast"}, BadRequestError, 400),
                             ({"policy.cache": "off", "service.http": "aiohttp"}, ConflictError, 409)):
        with pytest.raises(exc) as info:
            flags.update(bad)
        assert info.value.status == status
        assert flags.values() == before and seen == ["on"], bad  # nothing applied, nobody called
    # a start-up flag at its current value is accepted (a whole set read by GET can be PUT back)
    assert flags.update({"service.http": "lean", "policy.cache": "off"}) == {"policy.cache": "off"}
    assert seen == ["on", "off"] and flags["policy.cache"] == "off"
    assert flags.update({"policy.cache": "off"}) == {} and seen == ["on", "off"]  # no change, no call


def test_unsubscribe_stops_the_calls() -> None:
    flags = FlagRegistry()
    seen: list[str] = []
    stop = flags.subscribe("graph.engine", seen.append)
    flags.update({"graph.engine": "lmdb"})
    stop()
    flags.update({"graph.engine": "csr"})
    assert seen == ["csr", "lmdb"]
    with pytest.raises(KeyError):
        flags.subscribe("no.such", seen.append)


def test_describe_has_every_field_of_every_flag() -> None:
    described = FlagRegistry("baseline").describe()
    assert described["profile"] == "baseline" and list(described["flags"]) == [f.name for f in FLAGS]
    for f in FLAGS:
        d = described["flags"][f.name]
        assert set(d) == FIELDS
        assert d == {"value": f.baseline, "default": f.default, "baseline": f.baseline, "choices": list(f.choices),
                     "startup": f.startup, "kind": f.kind, "description": f.description}


def test_gil_switch_flag_sets_the_switch_interval() -> None:
    before = sys.getswitchinterval()
    flags = FlagRegistry()
    stop = subscribe_process(flags)
    try:
        assert sys.getswitchinterval() == pytest.approx(0.0001)
        flags.update({"runtime.gil_switch": "default"})
        assert sys.getswitchinterval() == pytest.approx(0.005)
        flags.update({"runtime.gil_switch": "fast"})
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    finally:
        stop()
        sys.setswitchinterval(before)
    flags.update({"runtime.gil_switch": "default"})
    assert sys.getswitchinterval() == before  # no longer followed
    assert gc.get_freeze_count() == 0  # stopping hands the heap back


def test_writer_follows_its_flags(tmp_path: Path) -> None:
    """runtime.writer_priority=high runs the writer thread 10 nice levels above the process where it may
    (root or CAP_SYS_NICE); otherwise the writer stays as it is and says so. normal puts it back.
    runtime.write_coalesce switches the writer's turn coalescing, runtime.group_window its commit window."""
    store = Store(tmp_path / "data")
    writer = Writer(store)
    tid = writer._thread.native_id
    assert tid is not None
    flags = FlagRegistry("baseline")
    try:
        process = os.getpriority(os.PRIO_PROCESS, os.getpid())
        assert writer.base_nice == writer.nice == process == os.getpriority(os.PRIO_PROCESS, tid)
        stop = subscribe_writer(flags, writer)
        assert not writer.coalesce and writer.nice == process  # the baseline values, applied at once
        flags.update({"runtime.writer_priority": "high", "runtime.write_coalesce": "turn"})
        may_raise = sys.platform.startswith("linux") and os.geteuid() == 0
        expected = process - 10 if may_raise else process
        assert writer.nice == expected == os.getpriority(os.PRIO_PROCESS, tid)
        assert writer.coalesce
        flags.update({"runtime.writer_priority": "normal", "runtime.write_coalesce": "off"})
        assert writer.nice == process == os.getpriority(os.PRIO_PROCESS, tid) and not writer.coalesce
        assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == process  # only the writer thread moved
        assert not writer.window and writer.window_for(10, idle=False) == 0.0  # group_window=off: baseline
        flags.update({"runtime.group_window": "adaptive"})
        assert writer.window and writer.window_for(10, idle=False) > 0.0
        flags.update({"runtime.group_window": "off"})
        assert not writer.window
        stop()
        flags.update({"runtime.write_coalesce": "turn"})
        assert not writer.coalesce  # no longer followed
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
    assert gc.get_freeze_count() == 0
    old = _Node()
    old.self_ref = old
    old_ref = weakref.ref(old)
    try:
        apply_gc(profile_values("optimized")["runtime.gc"])
        assert gc.get_freeze_count() > 1000
        new = _Node()
        new.self_ref = new
        new_ref = weakref.ref(new)
        del old, new
        gc.collect()
        assert new_ref() is None  # made after the freeze: collected
        assert old_ref() is not None  # frozen: left alone
    finally:
        apply_gc(profile_values("baseline")["runtime.gc"])
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert old_ref() is None


def test_flags_command_prints_the_whole_registry(capsys: pytest.CaptureFixture[str]) -> None:
    for profile in PROFILES:
        assert main(["flags", "--profile", profile, "--json"]) == 0
        assert orjson.loads(capsys.readouterr().out) == FlagRegistry(profile).describe()
    assert main(["flags", "--flag", "graph.engine=lmdb"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("profile: custom")
    words = " ".join(table.split())  # descriptions are wrapped
    for f in FLAGS:
        row = next(line for line in table.splitlines() if line.startswith(f.name + " "))
        assert row.split() == [f.name, "lmdb" if f.name == "graph.engine" else f.default, f.default, f.baseline,
                               "|".join(f.choices), "start-up" if f.startup else "run-time", f.kind]
        assert f.description in words, f.name
    assert main(["flags", "--flag", "graph.engine=fast"]) == 2
    assert "graph.engine" in capsys.readouterr().err


def test_admin_flags_describe_the_registry(server: Server) -> None:
    """GET /v1/admin/flags is `provgraph flags --json` of the server's profile; PUT answers the same
    shape; a bad update (unknown flag, bad value: 400, start-up flag: 409) changes nothing."""
    admin = server.api()
    got = admin.ok("GET", "/v1/admin/flags")
    assert got == FlagRegistry(PROFILE).describe()
    status, body = server.api(None).call("GET", "/v1/admin/flags")
    assert status == 401 and set(body["error"]) == {"code", "message", "details", "request_id"}
    other = "lmdb" if got["flags"]["graph.engine"]["value"] == "csr" else "csr"
    for bad, status, code in (({"graph.engine": other, "no.such.flag": "on"}, 400, "bad_request"),
                              ({"graph.engine": other, "policy.cache": "maybe"}, 400, "bad_request"),
                              ({"graph.engine": other, "service.http": "x"}, 400, "bad_request"),
                              ({"graph.engine": other, "service.http": "aiohttp" if
                                got["flags"]["service.http"]["value"] == "lean" else "lean"}, 409, "conflict"),
                              (["graph.engine"], 400, "bad_request")):
        answer: Any = admin.call("PUT", "/v1/admin/flags", bad)
        assert (answer[0], answer[1]["error"]["code"]) == (status, code), (bad, answer)
        assert admin.ok("GET", "/v1/admin/flags") == got, bad  # nothing applied
    with admin.flags_set({"graph.engine": other}):
        changed = admin.ok("GET", "/v1/admin/flags")
        assert changed["profile"] == "custom" and changed["flags"]["graph.engine"]["value"] == other
        put = admin.ok("PUT", "/v1/admin/flags", {"graph.engine": other})
        assert put == changed
    assert admin.ok("GET", "/v1/admin/flags") == got


def test_openapi_documents_the_registry_shape() -> None:
    """The served OpenAPI document's Flags schema names the fields, kinds and profiles the registry has."""
    doc = orjson.loads((Path(__file__).resolve().parent.parent / "python" / "provgraph" / "service"
                        / "openapi.json").read_bytes())
    schema = doc["components"]["schemas"]["Flags"]
    assert set(schema["properties"]["profile"]["enum"]) == {*PROFILES, "custom"}
    flag = schema["properties"]["flags"]["additionalProperties"]
    assert set(flag["required"]) == set(flag["properties"]) == FIELDS
    assert flag["properties"]["kind"]["enum"] == list(KINDS)
