"""Policy: OPA bundles (parsing, validation, building) for the Rust Rego engine."""

from __future__ import annotations

from provgraph.errors import BundleError
from provgraph.policy.bundle import (
    Bundle,
    build_bundle,
    example_bundle_dir,
    example_bundle_files,
    load_example_bundle,
    package_of,
    parse_bundle,
)

__all__ = [
    "Bundle",
    "BundleError",
    "build_bundle",
    "example_bundle_dir",
    "example_bundle_files",
    "load_example_bundle",
    "package_of",
    "parse_bundle",
]
