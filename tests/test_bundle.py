"""OPA bundles: build/parse round trip, every malformed kind, the example authz bundle."""

from __future__ import annotations

import gzip
import io
import tarfile
from typing import Any

import blake3
import orjson
import pytest
from provgraph.errors import BadRequestError, BundleError
from provgraph.policy import (
    Bundle,
    build_bundle,
    example_bundle_dir,
    load_example_bundle,
    package_of,
    parse_bundle,
)

POLICY = "package provgraph.authz\n\nallow if input.user == \"alice\"\n"
MANIFEST = {"revision": "r1", "roots": ["provgraph"]}


def _parse(files: dict[str, str | bytes], manifest: dict[str, Any] | None = MANIFEST,
           **kw: Any) -> Bundle:
    return parse_bundle("t", build_bundle(files, manifest), **kw)


def _reject(raw: bytes, reason: str, **kw: Any) -> BundleError:
    with pytest.raises(BundleError) as info:
        parse_bundle("t", raw, **kw)
    assert info.value.details["reason"] == reason, info.value.details
    return info.value


def _reject_files(files: dict[str, str | bytes], reason: str,
                  manifest: dict[str, Any] | None = MANIFEST) -> BundleError:
    return _reject(build_bundle(files, manifest), reason)


def _gz(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


def _raw_tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A .tar.gz with hand-made headers (links, devices, odd names) that build_bundle won't make."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, content in members:
            if content is not None:
                info.size = len(content)
            tf.addfile(info, io.BytesIO(content) if content is not None else None)
    return _gz(buf.getvalue())


def _file(name: str, content: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), content


def _manifest_member() -> tuple[tarfile.TarInfo, bytes]:
    return _file(".manifest", orjson.dumps(MANIFEST))


# ----------------------------------------------------------------------------- round trip


def test_round_trip_modules_data_and_metadata() -> None:
    files: dict[str, str | bytes] = {
        "provgraph/authz/policy.rego": POLICY,
        "provgraph/authz/data.json": '{"roles": {"admin": ["*"]}}',
        "provgraph/authz/limits/data.yaml": "max: 5\nnames: [a, b]\n",
        "provgraph/other/data.yml": "true: yes\n",
        "data.json": '{"provgraph": {"top": 1}}',
        "README.md": "ignored",
    }
    raw = build_bundle(files, {**MANIFEST, "metadata": {"team": "sec"}})
    b = parse_bundle("authz", raw)
    assert (b.name, b.revision, b.roots) == ("authz", "r1", ["provgraph"])
    assert b.modules == [("provgraph/authz/policy.rego", POLICY)]
    assert b.data == {"provgraph": {
        "top": 1,
        "authz": {"roles": {"admin": ["*"]}, "limits": {"max": 5, "names": ["a", "b"]}},
        "other": {"true": True},
    }}
    assert b.digest == blake3.blake3(raw).hexdigest() and len(b.digest) == 64
    assert b.etag == f'"{b.digest}"'
    assert b.size == len(raw)
    assert b.manifest["metadata"] == {"team": "sec"}
    assert b.ignored == ["README.md"] and not b.signed
    assert orjson.loads(b.data_json()) == b.data
    assert b.rego_version == 1


def test_build_is_deterministic_and_digest_stable() -> None:
    files: dict[str, str | bytes] = {"b/x.rego": "package b\n", "a/data.json": "{}", "c": b"\x00"}
    one = build_bundle(files, {"revision": "1"})
    two = build_bundle(dict(reversed(list(files.items()))), {"revision": "1"})
    assert one == two
    assert parse_bundle("x", one).digest == parse_bundle("y", two).digest
    assert parse_bundle("x", build_bundle(files, {"revision": "2"})).digest != \
        parse_bundle("x", one).digest
    with tarfile.open(fileobj=io.BytesIO(one), mode="r:gz") as tf:
        assert tf.getnames() == [".manifest", "a/data.json", "b/x.rego", "c"]
        assert {m.mtime for m in tf.getmembers()} == {0}


def test_manifest_defaults_and_empty_revision() -> None:
    b = _parse({"x/policy.rego": "package x\n", "data.json": '{"y": 1}'}, {})
    assert b.revision == "" and b.roots == [""]
    assert b.data == {"y": 1}
    assert _parse({}, {"revision": ""}).revision == ""


def test_opa_build_style_and_dot_slash_names_are_accepted() -> None:
    # `opa build` writes "/.manifest", "/x/policy.rego"; `tar -C dir .` writes "./…" and "./".
    raw = _raw_tar([
        _file("/.manifest", orjson.dumps(MANIFEST)),
        _file("/provgraph/policy.rego", b"package provgraph\n"),
        (tarfile.TarInfo("./provgraph/authz"), None),
        _file("./provgraph/authz/data.json", b'{"a": 1}'),
    ])
    raw_dir = _raw_tar([_manifest_member()])
    assert parse_bundle("t", raw_dir).modules == []
    dir_info = tarfile.TarInfo("./")
    dir_info.type = tarfile.DIRTYPE
    assert parse_bundle("t", _raw_tar([(dir_info, None), _manifest_member()])).revision == "r1"
    b = parse_bundle("t", raw)
    assert b.modules == [("provgraph/policy.rego", "package provgraph\n")]
    assert b.data == {"provgraph": {"authz": {"a": 1}}}


def test_signatures_and_wasm_files_are_ignored_but_noted() -> None:
    b = _parse({".signatures.json": '{"signatures": []}', "provgraph/policy.wasm": b"\0asm",
                "provgraph/x.json": "{}"})
    assert b.signed
    assert b.ignored == [".signatures.json", "provgraph/policy.wasm", "provgraph/x.json"]


def test_segment_prefixes_are_not_string_prefixes() -> None:
    b = _parse({"ab/data.json": '{"x": 1}', "a/p.rego": "package a.q\n"},
               {"roots": ["a", "ab"]})
    assert b.data == {"ab": {"x": 1}}


def test_data_above_a_root_routes_into_it() -> None:
    b = _parse({"data.json": '{"provgraph": {"x": {"y": 1}}}'})
    assert b.data == {"provgraph": {"x": {"y": 1}}}
    # Even an empty object creates a path, and OPA rejects any path outside the roots.
    _reject_files({"data.json": '{"provgraph": {}, "other": {}}'}, "data outside roots")


def test_nested_data_may_be_any_json_value_and_objects_merge() -> None:
    b = _parse({"provgraph/list/data.json": "[1, 2]", "provgraph/n/data.json": "3",
                "provgraph/data.json": '{"m": {"a": 1}}', "provgraph/m/data.yaml": "b: 2"})
    assert b.data == {"provgraph": {"list": [1, 2], "n": 3, "m": {"a": 1, "b": 2}}}


def test_yaml_values_are_converted_like_opa() -> None:
    b = _parse({"provgraph/data.yaml": "1: one\nfalse: no\nwhen: 2026-11-26\nf: 1.5\n"})
    assert b.data == {"provgraph": {"1": "one", "false": False, "when": "2026-11-26", "f": 1.5}}


def test_quoted_package_segments() -> None:
    b = _parse({"p.rego": 'package provgraph["my-pkg"].x  # comment\n'})
    assert b.modules[0][0] == "p.rego"
    _reject_files({"p.rego": 'package prov["graph"]\n'}, "package outside roots")


def test_package_of() -> None:
    assert package_of("# header\n\n  # more\npackage provgraph.authz\n\nallow := true\n") == \
        "provgraph.authz"
    assert package_of("package a.b # trailing\n") == "a.b"
    assert package_of('package a["x.y"]\n') == "a.x.y"
    with pytest.raises(BundleError):
        package_of("# only a comment\nallow := true\n")
    with pytest.raises(BundleError):
        package_of("packages a\n")


# -------------------------------------------------------------------------- malformed kinds


def test_bundle_error_is_a_400() -> None:
    err = _reject(b"plain text", "not gzip")
    assert isinstance(err, BadRequestError)
    assert err.status == 400 and err.code == "bundle_invalid"
    assert err.to_json()["error"]["details"]["reason"] == "not gzip"


def test_not_gzip() -> None:
    _reject(b"", "not gzip")
    plain_tar = gzip.decompress(build_bundle({}, MANIFEST))
    _reject(plain_tar, "not gzip")
    raw = build_bundle({"a.rego": "package a\n"}, {})
    _reject(raw[: len(raw) // 2], "not gzip")
    _reject(raw[:2] + b"\xff" * 30, "not gzip")
    _reject(raw + b"garbage", "not gzip")


def test_trailing_zero_padding_and_multi_member_gzip_are_accepted() -> None:
    raw = build_bundle({"provgraph/p.rego": "package provgraph\n"}, MANIFEST)
    assert parse_bundle("t", raw + b"\0" * 512).revision == "r1"
    tar_bytes = gzip.decompress(raw)
    split = _gz(tar_bytes[:700]) + _gz(tar_bytes[700:])
    assert parse_bundle("t", split).modules == parse_bundle("t", raw).modules


def test_not_a_tar() -> None:
    err = _reject(_gz(b"this is not a tar archive" * 40), "not a tar")
    assert "not a tar" in err.message
    _reject(_gz(b""), "not a tar")


def test_missing_manifest() -> None:
    err = _reject_files({"provgraph/p.rego": "package provgraph\n"}, "missing .manifest",
                        manifest=None)
    assert err.details["file"] == ".manifest"
    # Only the top-level .manifest counts.
    _reject_files({"sub/.manifest": "{}"}, "missing .manifest", manifest=None)


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (b"{not json", "manifest not JSON"),
        (b"[]", "manifest not an object"),
        (b'"r1"', "manifest not an object"),
        (b'{"revision": 5}', "revision not a string"),
        (b'{"revision": null}', "revision not a string"),
        (b'{"roots": "provgraph"}', "roots not a list of strings"),
        (b'{"roots": ["a", 1]}', "roots not a list of strings"),
        (b'{"roots": ["a/b", "a"]}', "overlapping roots"),
        (b'{"roots": ["a", "a/b/c"]}', "overlapping roots"),
        (b'{"roots": ["", "x"]}', "overlapping roots"),
        (b'{"roots": ["x", "x/"]}', "overlapping roots"),
        (b'{"roots": ["a//b"]}', "bad root"),
        (b'{"metadata": []}', "metadata not an object"),
        (b'{"rego_version": 2}', "bad rego_version"),
        (b'{"wasm": [{"entrypoint": "a/b", "module": "policy.wasm"}]}', "wasm not supported"),
    ],
)
def test_bad_manifest(manifest: bytes, reason: str) -> None:
    err = _reject_files({".manifest": manifest}, reason, manifest=None)
    assert err.details["file"] == ".manifest"


def test_overlapping_roots_name_both() -> None:
    err = _reject_files({}, "overlapping roots", {"roots": ["a/b", "a"]})
    assert err.details["roots"] == ["a/b", "a"]


@pytest.mark.parametrize(
    ("files", "reason", "file"),
    [
        ({"provgraph/data.json": "{bad"}, "invalid JSON", "provgraph/data.json"),
        ({"provgraph/data.json": ""}, "invalid JSON", "provgraph/data.json"),
        ({"provgraph/data.json": "NaN"}, "invalid JSON", "provgraph/data.json"),
        ({"provgraph/data.yaml": "a: [1, 2"}, "invalid YAML", "provgraph/data.yaml"),
        ({"provgraph/data.yml": "? [1, 2]\n: x\n"}, "invalid YAML", "provgraph/data.yml"),
        ({"provgraph/data.yaml": b"a: \xff\n"}, "invalid YAML", "provgraph/data.yaml"),
        ({"provgraph/data.yaml": "a: .nan\n"}, "invalid YAML", "provgraph/data.yaml"),
        ({"data.json": "[1, 2]"}, "root data not an object", "data.json"),
        ({"data.yaml": "just a string"}, "root data not an object", "data.yaml"),
    ],
)
def test_bad_data_file(files: dict[str, str | bytes], reason: str, file: str) -> None:
    roots = {"roots": [""]} if file.count("/") == 0 else MANIFEST
    err = _reject_files(files, reason, manifest=roots)
    assert err.details["file"] == file
    assert file in err.message


@pytest.mark.parametrize(
    ("files", "location"),
    [
        ({"other/data.json": '{"x": 1}'}, "other"),
        ({"data.json": '{"provgraph": {}, "other": 1}'}, "other"),
        ({"data.json": '{"prov": {"graph": 1}}'}, "prov"),
        ({"provgraph/../x/data.json": "{}"}, None),
    ],
)
def test_data_outside_roots(files: dict[str, str | bytes], location: str | None) -> None:
    if location is None:
        _reject_files(files, "path traversal")
        return
    err = _reject_files(files, "data outside roots")
    assert err.details["location"] == location


def test_data_above_roots_must_be_an_object_that_routes_into_them() -> None:
    err = _reject_files({"data.json": '{"provgraph": 1}'}, "data outside roots",
                        manifest={"roots": ["provgraph/authz"]})
    assert err.details["location"] == "provgraph"


def test_module_outside_roots() -> None:
    err = _reject_files({"provgraph/p.rego": "package other.authz\n"}, "package outside roots")
    assert err.details == {"reason": "package outside roots", "file": "provgraph/p.rego",
                           "package": "other.authz"}
    # The file's location does not matter, only its package (as in OPA).
    assert _parse({"anywhere/p.rego": "package provgraph.x\n"}).modules[0][0] == "anywhere/p.rego"
    _reject_files({"p.rego": "package provgraphx\n"}, "package outside roots")


def test_module_without_package_or_not_utf8() -> None:
    err = _reject_files({"provgraph/p.rego": "# nothing\nallow := true\n"}, "no package")
    assert err.details["file"] == "provgraph/p.rego"
    _reject_files({"provgraph/p.rego": ""}, "no package")
    _reject_files({"provgraph/p.rego": "package 9lives\n"}, "bad package")
    _reject_files({"provgraph/p.rego": b"package provgraph\n# \xff\xfe\n"}, "module not UTF-8")


@pytest.mark.parametrize(
    ("files", "location"),
    [
        ({"provgraph/a/data.json": '{"b": 1}', "provgraph/a/b/data.json": '{"c": 2}'},
         "provgraph/a/b"),
        ({"provgraph/data.json": '{"a": {"x": 1}}', "provgraph/a/data.json": '{"x": 2}'},
         "provgraph/a/x"),
        ({"provgraph/a/data.json": "1", "provgraph/a/data.yaml": "2"}, "provgraph/a"),
        ({"provgraph/a/data.json": '{"x": 1}', "provgraph/a/data.yml": "x: 1"}, "provgraph/a/x"),
    ],
)
def test_conflicting_data(files: dict[str, str | bytes], location: str) -> None:
    err = _reject_files(files, "conflicting data")
    assert err.details["location"] == location


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.rego", "path traversal"),
        ("a/../../evil.rego", "path traversal"),
        ("/../etc/data.json", "path traversal"),
        ("a//b.rego", "bad member name"),
        ("a/./b.rego", "bad member name"),
        ("//abs.rego", "bad member name"),
        ("a\\b.rego", "bad member name"),
        ("a\nb.rego", "bad member name"),
    ],
)
def test_odd_member_names(name: str, reason: str) -> None:
    err = _reject(_raw_tar([_manifest_member(), _file(name, b"package provgraph\n")]), reason)
    assert err.details["file"] == name


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                  tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_links_and_devices_are_rejected(kind: bytes) -> None:
    info = tarfile.TarInfo("provgraph/data.json")
    info.type = kind
    info.linkname = "/etc/passwd"
    err = _reject(_raw_tar([_manifest_member(), (info, None)]), "not a regular file")
    assert err.details["file"] == "provgraph/data.json"


def test_duplicate_files_are_rejected() -> None:
    raw = _raw_tar([_manifest_member(), _file("provgraph/p.rego", b"package provgraph\n"),
                    _file("/provgraph/p.rego", b"package provgraph.x\n")])
    assert _reject(raw, "duplicate file").details["file"] == "provgraph/p.rego"


def test_uncompressed_size_limit() -> None:
    # ~4 MiB of zeros compresses to a few KiB: the guard must count decompressed bytes.
    raw = build_bundle({"provgraph/data.json": '{"pad": "' + "0" * (4 << 20) + '"}'}, MANIFEST)
    assert len(raw) < 64 << 10
    err = _reject(raw, "uncompressed size over limit", max_uncompressed=1 << 20)
    assert err.details["limit"] == 1 << 20
    assert parse_bundle("t", raw, max_uncompressed=8 << 20).size == len(raw)


# ----------------------------------------------------------------------------- the example


def test_example_bundle_parses() -> None:
    raw = load_example_bundle()
    b = parse_bundle("authz", raw)
    assert b.revision == "2026-11-26.1"
    assert b.roots == ["provgraph"]
    assert [path for path, _ in b.modules] == ["provgraph/authz/policy.rego"]
    assert package_of(b.modules[0][1]) == "provgraph.authz"
    authz = b.data["provgraph"]["authz"]
    assert set(authz) >= {"roles", "resource_types", "hazardous_actions", "dual_control"}
    assert authz["roles"]["admin"] == {"*": ["*"]}
    assert authz["dual_control"]["required_approvers"] == 2
    # The README stays out of the bundle; building twice gives the same bytes.
    assert b.ignored == []
    assert load_example_bundle() == raw
    assert (example_bundle_dir() / "README.md").is_file()


def test_example_bundle_revision_override() -> None:
    b = parse_bundle("authz", load_example_bundle(revision="r2"))
    assert b.revision == "r2"
    assert b.digest != parse_bundle("authz", load_example_bundle()).digest


def test_missing_example_bundle_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="example bundle 'nope' not found"):
        load_example_bundle("nope")


# -------------------------------------------------------- the example policy, evaluated in Rust


def _input(action: str, rtype: str, roles: list[str], attributes: dict[str, Any] | None = None,
           context: dict[str, Any] | None = None, tenant: str = "acme") -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "actor": {"id": "user:alice", "roles": roles},
        "action": action,
        "resource": {"type": rtype, "id": "r-1", "attributes": attributes or {}},
        "context": context or {},
    }


DUAL = [{"type": "dual_control", "required_approvers": 2}]

# (case, input, allow, reasons, obligations)
DECISIONS: list[tuple[str, Any, bool, list[str], list[dict[str, Any]]]] = [
    ("rbac allow", _input("graph.read", "graph", ["analyst"]), True,
     ["role analyst grants graph.read on graph"], []),
    ("two roles grant", _input("graph.read", "graph", ["viewer", "analyst"]), True,
     ["role analyst grants graph.read on graph", "role viewer grants graph.read on graph"], []),
    ("no role", _input("graph.read", "graph", []), False,
     ["no role grants graph.read on graph"], []),
    ("role lacks action", _input("graph.write", "graph", ["analyst"]), False,
     ["no role grants graph.write on graph"], []),
    ("unknown role", _input("graph.read", "graph", ["wizard"]), False,
     ["no role grants graph.read on graph"], []),
    ("operator deploy", _input("deploy", "service", ["operator"]), True,
     ["role operator grants deploy on service"], []),
    ("restricted denied", _input("graph.read", "graph", ["analyst"],
                                 {"classification": "restricted"}), False,
     ["restricted resource requires clearance"], []),
    ("restricted cleared", _input("graph.read", "graph", ["analyst", "cleared"],
                                  {"classification": "restricted"}), True,
     ["restricted resource: actor is cleared", "role analyst grants graph.read on graph"], []),
    ("restricted purpose", _input("graph.read", "graph", ["analyst"],
                                  {"classification": "restricted"},
                                  {"purpose": "incident-response"}), True,
     ["restricted resource: purpose incident-response is allowed",
      "role analyst grants graph.read on graph"], []),
    ("restricted bad purpose", _input("graph.read", "graph", ["analyst"],
                                      {"classification": "restricted"}, {"purpose": "curiosity"}),
     False, ["restricted resource requires clearance"], []),
    ("same tenant", _input("graph.read", "graph", ["analyst"], {"tenant_id": "acme"}), True,
     ["role analyst grants graph.read on graph"], []),
    ("cross tenant", _input("graph.read", "graph", ["admin"], {"tenant_id": "globex"}), False,
     ["resource belongs to tenant globex, not acme"], []),
    ("hazardous allowed", _input("graph.delete", "graph", ["operator"]), True,
     ["role operator grants graph.delete on graph"], DUAL),
    ("hazardous denied", _input("key.rotate", "key", ["analyst"]), False,
     ["no role grants key.rotate on key"], []),
    ("admin wildcard", _input("export.bulk", "export", ["admin"]), True,
     ["role admin grants export.bulk on export"], DUAL),
    ("admin any action", _input("tenant.suspend", "tenant", ["admin"]), True,
     ["role admin grants tenant.suspend on tenant"], []),
    ("unknown type", _input("graph.read", "spaceship", ["admin"]), False,
     ["unknown resource type spaceship"], []),
    ("empty input", {}, False, ["request has no action", "request has no resource type"], []),
    ("input not an object", None, False,
     ["request has no action", "request has no resource type"], []),
    ("mistyped fields", {"tenant_id": 7, "actor": [], "action": 3, "resource": 5,
                         "context": "x"}, False,
     ["request has no action", "request has no resource type"], []),
    ("resource tenant null", _input("key.rotate", "key", ["security"], {"tenant_id": None}),
     False, ["resource belongs to tenant null, not acme"], []),
    ("malformed roles", {**_input("graph.read", "graph", []),
                         "actor": {"id": "x", "roles": "admin"}}, False,
     ["no role grants graph.read on graph"], []),
]


def test_example_policy_decisions() -> None:
    # No importorskip on purpose: the Rust engine is part of the product; failing here means
    # provgraph._core was built without the policy engine.
    from provgraph._core import PolicyBundle

    b = parse_bundle("authz", load_example_bundle())
    compiled = PolicyBundle.compile(b.modules, b.data_json())
    failures = []
    for case, inp, allow, reasons, obligations in DECISIONS:
        out = compiled.eval("provgraph/authz/decision", orjson.dumps(inp))
        assert out is not None, case
        result = orjson.loads(out)
        expected = {"allow": allow, "reasons": reasons, "obligations": obligations}
        if result != expected:
            failures.append((case, result, expected))
    assert not failures, failures
