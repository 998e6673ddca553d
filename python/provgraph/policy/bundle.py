"""OPA bundles: parse and validate a gzipped tarball of Rego modules and data, and build one."""

from __future__ import annotations

import datetime as _dt
import gzip
import io
import math
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import blake3
import orjson
import yaml

from provgraph.errors import BundleError

__all__ = [
    "DATA_FILES",
    "MAX_UNCOMPRESSED",
    "Bundle",
    "build_bundle",
    "example_bundle_dir",
    "example_bundle_files",
    "load_example_bundle",
    "package_of",
    "package_path",
    "parse_bundle",
]

MAX_UNCOMPRESSED = 64 << 20
# OPA loads only these names as data; other JSON/YAML files in a bundle are ignored.
DATA_FILES = ("data.json", "data.yaml", "data.yml")
MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"
_GZIP_MAGIC = b"\x1f\x8b"
# JSON numbers must stay within what orjson (and the Rust engine) round-trip exactly.
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


@dataclass(frozen=True)
class Bundle:
    """A validated bundle: modules and the merged data document, ready for the Rust compiler."""

    name: str
    revision: str
    roots: list[str]
    modules: list[tuple[str, str]]
    data: dict[str, Any]
    digest: str
    size: int
    manifest: dict[str, Any]
    # Files present but not loaded (signatures, wasm, other JSON...), for status and logs.
    ignored: list[str] = field(default_factory=list)

    def data_json(self) -> bytes:
        """The data document as JSON (sorted keys, so equal data gives equal bytes)."""
        return orjson.dumps(self.data, option=orjson.OPT_SORT_KEYS)

    @property
    def signed(self) -> bool:
        """True when the bundle carries `.signatures.json` (kept, but not verified here)."""
        return SIGNATURES in self.ignored

    @property
    def rego_version(self) -> int:
        """The manifest's `rego_version` (0 or 1); Rego v1 when absent."""
        value = self.manifest.get("rego_version", 1)
        return int(value)

    @property
    def etag(self) -> str:
        """The strong HTTP ETag of the raw bytes."""
        return f'"{self.digest}"'


# ---------------------------------------------------------------------------------------
# Parsing


def parse_bundle(name: str, raw: bytes, max_uncompressed: int = MAX_UNCOMPRESSED) -> Bundle:
    """Validate `raw` as an OPA bundle; raise BundleError with the file and reason on failure."""
    tar_bytes = _gunzip(raw, max_uncompressed)
    files, ignored = _read_tar(tar_bytes)

    if MANIFEST not in files:
        raise _err(
            "missing .manifest: the bundle has no top-level .manifest file",
            MANIFEST,
            "missing .manifest",
        )
    manifest = _parse_manifest(files.pop(MANIFEST))
    roots = [_root_segments(r) for r in manifest["roots"]]

    modules: list[tuple[str, str]] = []
    data: dict[str, Any] = {}
    # Sorted so that the first conflict reported is the same on every upload.
    for path in sorted(files):
        content = files[path]
        base = path.rsplit("/", 1)[-1]
        if path.endswith(".rego"):
            modules.append((path, _check_module(path, content, roots)))
        elif base in DATA_FILES:
            location = path.split("/")[:-1]
            value = _parse_data(path, content, base)
            if not location and not isinstance(value, dict):
                raise _err(
                    f"{path}: the root data file must contain a JSON object",
                    path,
                    "root data not an object",
                )
            _check_data_roots(path, location, value, roots)
            _merge(data, location, value, path)
        else:
            ignored.append(path)

    return Bundle(
        name=name,
        revision=manifest["revision"],
        roots=list(manifest["roots"]),
        modules=modules,
        data=data,
        digest=blake3.blake3(raw).hexdigest(),
        size=len(raw),
        manifest=manifest,
        ignored=sorted(ignored),
    )


def _err(message: str, file: str | None, reason: str, **extra: Any) -> BundleError:
    details: dict[str, Any] = {"reason": reason}
    if file is not None:
        details["file"] = file
    details.update(extra)
    return BundleError(message, details)


def _gunzip(raw: bytes, limit: int) -> bytes:
    """Decompress every gzip member, never producing more than `limit` bytes (zip-bomb guard)."""
    if not raw.startswith(_GZIP_MAGIC):
        raise _err("not gzip: the body does not start with the gzip magic bytes", None, "not gzip")
    out = bytearray()
    rest = raw
    # A gzip file may hold several members back to back (as `cat a.gz b.gz` makes).
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            # One byte over the limit is enough to know; the rest is never inflated.
            out += d.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise _err(f"not gzip: {exc}", None, "not gzip") from exc
        if len(out) > limit:
            raise _too_large(limit)
        if not d.eof:
            raise _err("not gzip: the gzip stream is truncated", None, "not gzip")
        rest = d.unused_data
        # Zero padding after the last member is tolerated, as gzip(1) does.
        if rest and not rest.startswith(_GZIP_MAGIC):
            if rest.strip(b"\x00"):
                raise _err("not gzip: trailing garbage after the gzip stream", None, "not gzip")
            break
    return bytes(out)


def _too_large(limit: int) -> BundleError:
    return _err(
        f"bundle too large: more than {limit} bytes uncompressed",
        None,
        "uncompressed size over limit",
        limit=limit,
    )


def _read_tar(tar_bytes: bytes) -> tuple[dict[str, bytes], list[str]]:
    """Read regular files into memory (never to disk); reject links, devices and odd names."""
    files: dict[str, bytes] = {}
    ignored: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tf:
            for member in tf.getmembers():
                path = _member_path(member.name)
                if member.isdir():
                    continue
                if not member.isreg():
                    raise _err(
                        f"{member.name}: only regular files and directories are allowed "
                        "(links, devices and fifos are rejected)",
                        member.name,
                        "not a regular file",
                    )
                if not path:
                    raise _err(f"{member.name!r}: a file needs a name", member.name,
                               "bad member name")
                if path in files:
                    raise _err(f"{path}: the file appears twice", path, "duplicate file")
                extracted = tf.extractfile(member)
                if extracted is None:  # pragma: no cover - isreg() members always extract
                    raise _err(f"{path}: unreadable member", path, "not a regular file")
                content = extracted.read()
                if len(content) != member.size:
                    raise _err(f"not a tar archive: {path} is truncated", path, "not a tar")
                files[path] = content
    except tarfile.TarError as exc:
        raise _err(f"not a tar archive: {exc}", None, "not a tar") from exc
    return files, ignored


def _member_path(name: str) -> str:
    """The bundle-relative path of a member; only `/` and `./` prefixes are stripped.

    OPA's own `opa build` writes names with a leading `/` and `tar -C dir .` writes `./`, so
    both are bundle-relative here (nothing is extracted to disk); `..`, empty or `.` segments,
    backslashes and control characters are rejected rather than normalized.
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name) or "\\" in name:
        raise _err(f"{name!r}: control character or backslash in name", name, "bad member name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _err(f"{name!r}: the name is not UTF-8", name, "bad member name") from exc
    path = name
    path = path.removeprefix("/")
    while path.startswith("./"):
        path = path[2:]
    if path in ("", "."):
        return ""
    # Directory entries end with "/"; only that one trailing slash is dropped.
    path = path.removesuffix("/")
    segments = path.split("/")
    for seg in segments:
        if seg == "..":
            raise _err(f"{name}: path traversal ('..') in name", name, "path traversal")
        if seg in ("", "."):
            raise _err(f"{name}: empty or '.' segment in name", name, "bad member name")
    return path


_REVISION_MAX = 256
_REVISION = re.compile(rf"[!-~]{{0,{_REVISION_MAX}}}")


def _parse_manifest(content: bytes) -> dict[str, Any]:
    try:
        manifest = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise _err(f".manifest: invalid JSON: {exc}", MANIFEST, "manifest not JSON") from exc
    if not isinstance(manifest, dict):
        raise _err(".manifest: must be a JSON object", MANIFEST, "manifest not an object")
    # OPA makes revision optional with "" as the default; "" is a valid revision too.
    revision = manifest.setdefault("revision", "")
    if not isinstance(revision, str):
        raise _err(".manifest: revision must be a string", MANIFEST, "revision not a string")
    # The revision is echoed in X-Bundle-Revision: a CR/LF in it would split the response head.
    if not _REVISION.fullmatch(revision):
        raise _err(".manifest: revision must be a printable token (visible ASCII, no spaces, at most "
                   f"{_REVISION_MAX} characters)", MANIFEST, "revision not a printable token")
    # No roots means the bundle owns the whole data document, as in OPA.
    roots = manifest.setdefault("roots", [""])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise _err(
            ".manifest: roots must be a list of strings", MANIFEST, "roots not a list of strings"
        )
    segs = [_root_segments(r) for r in roots]
    for i, a in enumerate(segs):
        for j, b in enumerate(segs):
            if i < j and (_is_prefix(a, b) or _is_prefix(b, a)):
                raise _err(
                    f".manifest: roots {roots[i]!r} and {roots[j]!r} overlap",
                    MANIFEST,
                    "overlapping roots",
                    roots=[roots[i], roots[j]],
                )
    if "metadata" in manifest and not isinstance(manifest["metadata"], dict):
        raise _err(".manifest: metadata must be an object", MANIFEST, "metadata not an object")
    if "rego_version" in manifest and manifest["rego_version"] not in (0, 1):
        raise _err(".manifest: rego_version must be 0 or 1", MANIFEST, "bad rego_version")
    # The engine evaluates Rego only: a wasm entrypoint would silently be undefined.
    if manifest.get("wasm"):
        raise _err(
            ".manifest: wasm modules are not supported", MANIFEST, "wasm not supported"
        )
    return manifest


def _root_segments(root: str) -> list[str]:
    """`"a/b"` → `["a", "b"]`; `""` (the whole data document) → `[]`."""
    stripped = root.strip("/")
    if not stripped:
        return []
    segments = stripped.split("/")
    if any(seg == "" for seg in segments):
        raise _err(f".manifest: bad root {root!r}", MANIFEST, "bad root", root=root)
    return segments


def _is_prefix(prefix: list[str], path: list[str]) -> bool:
    return path[: len(prefix)] == prefix


def _under_roots(path: list[str], roots: list[list[str]]) -> bool:
    return any(_is_prefix(root, path) for root in roots)


def _check_module(path: str, content: bytes, roots: list[list[str]]) -> str:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _err(f"{path}: module is not UTF-8 ({exc})", path, "module not UTF-8") from exc
    try:
        package = package_path(text)
    except BundleError as exc:
        raise _err(f"{path}: {exc.message}", path, exc.details.get("reason", "no package")) from exc
    if not _under_roots(package, roots):
        dotted = ".".join(package)
        raise _err(
            f"{path}: package {dotted} is outside the bundle roots",
            path,
            "package outside roots",
            package=dotted,
        )
    return text


def _parse_data(path: str, content: bytes, base: str) -> Any:
    if base == "data.json":
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise _err(f"{path}: invalid JSON: {exc}", path, "invalid JSON") from exc
    try:
        text = content.decode("utf-8")
        loaded = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _err(f"{path}: invalid YAML: {exc}", path, "invalid YAML") from exc
    return _yaml_to_json(loaded, path)


def _yaml_to_json(value: Any, path: str) -> Any:
    """YAML → JSON values as OPA converts them: bool/number keys become strings, dates ISO."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k is None or isinstance(k, (dict, list, tuple, bytes)):
                raise _err(f"{path}: object key {k!r} is not a string", path, "invalid YAML")
            if isinstance(k, bool):
                key = "true" if k else "false"
            elif isinstance(k, (_dt.date, _dt.datetime)):
                key = k.isoformat()
            else:
                key = str(k)
            out[key] = _yaml_to_json(v, path)
        return out
    if isinstance(value, (list, tuple)):
        return [_yaml_to_json(v, path) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise _err(f"{path}: integer {value} out of range", path, "invalid YAML")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _err(f"{path}: {value} is not a JSON number", path, "invalid YAML")
        return value
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    raise _err(f"{path}: unsupported YAML value {type(value).__name__}", path, "invalid YAML")


def _check_data_roots(path: str, location: list[str], value: Any, roots: list[list[str]]) -> None:
    """Every leaf the file writes must lie under a root (objects above a root are descended)."""
    if _under_roots(location, roots):
        return
    # Above a root an object only routes deeper; anything else would write outside the roots.
    if isinstance(value, dict) and any(_is_prefix(location, r) for r in roots):
        for key, sub in value.items():
            _check_data_roots(path, [*location, key], sub, roots)
        return
    where = "/".join(location) or "(root)"
    raise _err(
        f"{path}: data at {where} is outside the bundle roots",
        path,
        "data outside roots",
        location=where,
    )


def _merge(data: dict[str, Any], location: list[str], value: Any, path: str) -> None:
    """Place `value` at `location`, merging objects; two values for one key is a conflict."""
    tree: Any = value
    for key in reversed(location):
        tree = {key: tree}
    _merge_objects(data, tree, [], path)


def _merge_objects(dst: dict[str, Any], src: dict[str, Any], at: list[str], path: str) -> None:
    for key, value in src.items():
        if key not in dst:
            dst[key] = value
        elif isinstance(dst[key], dict) and isinstance(value, dict):
            _merge_objects(dst[key], value, [*at, key], path)
        else:
            raise _conflict(path, [*at, key])


def _conflict(path: str, location: list[str]) -> BundleError:
    where = "/".join(location)
    return _err(
        f"{path}: conflicting data at {where} (set by more than one data file)",
        path,
        "conflicting data",
        location=where,
    )


# ---------------------------------------------------------------------------------------
# Rego packages

# A package ref: identifiers joined by `.`, plus string segments in brackets (`a["b-c"].d`).
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING_SEG = re.compile(r'\[\s*"((?:[^"\\]|\\.)*)"\s*\]')


def package_of(rego_text: str) -> str:
    """`"provgraph.authz"` for a module starting `package provgraph.authz` (comments skipped)."""
    return ".".join(package_path(rego_text))


def package_path(rego_text: str) -> list[str]:
    """The package as data-path segments: `package a.b["c-d"]` → `["a", "b", "c-d"]`."""
    for line in rego_text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        # The package clause must be the module's first statement.
        m = re.match(r"package(?=\s)\s*", stripped)
        if not m:
            break
        return _parse_package_ref(stripped[m.end() :])
    raise BundleError("module has no package declaration", {"reason": "no package"})


def _parse_package_ref(text: str) -> list[str]:
    m = _IDENT.match(text)
    if not m:
        raise BundleError(f"bad package declaration: {text!r}", {"reason": "bad package"})
    segments = [m.group(0)]
    pos = m.end()
    while pos < len(text):
        rest = text[pos:]
        if rest[0] == ".":
            m = _IDENT.match(text, pos + 1)
            if not m:
                raise BundleError(f"bad package declaration: {text!r}", {"reason": "bad package"})
            segments.append(m.group(0))
            pos = m.end()
        elif rest[0] == "[":
            sm = _STRING_SEG.match(text, pos)
            if not sm:
                raise BundleError(f"bad package declaration: {text!r}", {"reason": "bad package"})
            segments.append(orjson.loads(f'"{sm.group(1)}"'))
            pos = sm.end()
        elif rest[0].isspace() or rest[0] == "#":
            break
        else:
            raise BundleError(f"bad package declaration: {text!r}", {"reason": "bad package"})
    return segments


# ---------------------------------------------------------------------------------------
# Building


def build_bundle(files: dict[str, str | bytes], manifest: dict[str, Any] | None = None) -> bytes:
    """A .tar.gz of `files` (+ `.manifest` from `manifest`), byte-identical for equal input.

    Names are written as given and not validated (tests build malformed bundles with it);
    `parse_bundle` is the validator.
    """
    entries: dict[str, bytes] = {
        path: content.encode("utf-8") if isinstance(content, str) else bytes(content)
        for path, content in files.items()
    }
    if manifest is not None:
        if MANIFEST in entries:
            raise ValueError("build_bundle: give the manifest either in files or as manifest")
        entries[MANIFEST] = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS)
    tar_buf = io.BytesIO()
    # PAX keeps long names; fixed owner, mode and mtime make the bytes reproducible.
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(entries):
            info = tarfile.TarInfo(path)
            info.size = len(entries[path])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(entries[path]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(tar_buf.getvalue())
    return out.getvalue()


def example_bundle_dir(name: str = "authz") -> Traversable:
    """The folder of the example bundle `name`, shipped inside the package (`provgraph/examples/bundles`)."""
    return resources.files("provgraph") / "examples" / "bundles" / name


def _walk(node: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    # Traversable has no rglob (the package may sit in a zip): walk it, names in sorted order.
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        rel = f"{prefix}{child.name}"
        if child.is_dir():
            yield from _walk(child, rel + "/")
        elif child.is_file():
            yield rel, child


def example_bundle_files(name: str = "authz") -> dict[str, bytes]:
    """The files of the example bundle `name` that OPA loads (`.rego` and data files), by path."""
    folder = example_bundle_dir(name)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"example bundle {name!r} not found at {folder}")
    # Only what OPA loads goes in: the README and editor files stay out of the bundle.
    return {rel: node.read_bytes() for rel, node in _walk(folder)
            if rel.endswith(".rego") or rel.rsplit("/", 1)[-1] in DATA_FILES}


def load_example_bundle(name: str = "authz", revision: str | None = None) -> bytes:
    """Build the example bundle `name` from its folder; `revision` overrides the manifest's."""
    files: dict[str, str | bytes] = dict(example_bundle_files(name))
    folder = example_bundle_dir(name)
    manifest = orjson.loads((folder / MANIFEST).read_bytes())
    if not isinstance(manifest, dict):
        raise BundleError(f"{folder / MANIFEST}: not a JSON object", {"reason": "bad manifest"})
    if revision is not None:
        manifest["revision"] = revision
    return build_bundle(files, manifest)
