"""Shapes from /work/shared/vault-api-subset.md (the HTTP contract), as reusable assertions."""

from __future__ import annotations

import re

ENVELOPE_KEYS = {"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth"}
VERSION_META_KEYS = {"created_time", "custom_metadata", "deletion_time", "destroyed", "version"}
KEY_META_KEYS = {
    "cas_required",
    "created_time",
    "current_version",
    "custom_metadata",
    "delete_version_after",
    "max_versions",
    "oldest_version",
    "updated_time",
    "versions",
}
# OpenBao additions that arca may copy (§5): allowed, not required.
KEY_META_OPTIONAL = {"current_metadata_version", "metadata_cas_required"}
VERSION_ENTRY_KEYS = {"created_time", "deletion_time", "destroyed"}
CONFIG_KEYS = {"cas_required", "delete_version_after", "max_versions"}
CONFIG_OPTIONAL = {"metadata_cas_required"}
HEALTH_KEYS = {
    "initialized",
    "sealed",
    "standby",
    "replication_performance_mode",
    "replication_dr_mode",
    "server_time_utc",
    "version",
}
SEAL_STATUS_KEYS = {"type", "initialized", "sealed", "t", "n", "progress", "nonce", "version"}

# RFC3339 UTC; Go's RFC3339Nano trims trailing zeros of the fraction.
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

CAS_MISMATCH = "check-and-set parameter did not match the current version"
CAS_REQUIRED = "check-and-set parameter required for this call"


def assert_envelope(body: dict, *, data_is_none: bool = False) -> None:
    """§3: all eight keys, KV-style lease fields, warnings null when empty."""
    assert isinstance(body, dict), body
    assert set(body) == ENVELOPE_KEYS, f"envelope keys {sorted(body)}"
    assert body["lease_id"] == ""
    assert body["renewable"] is False
    assert body["lease_duration"] == 0
    assert body["wrap_info"] is None
    assert body["auth"] is None
    assert body["warnings"] is None or (isinstance(body["warnings"], list) and body["warnings"]), body["warnings"]
    assert isinstance(body["request_id"], str) and body["request_id"], body["request_id"]
    if data_is_none:
        assert body["data"] is None


def assert_ts(value: str) -> None:
    assert isinstance(value, str) and TS_RE.match(value), f"not an RFC3339 UTC timestamp: {value!r}"


def assert_version_meta(meta: dict, *, version: int, deleted: bool = False, destroyed: bool = False,
                        custom_metadata=None) -> None:
    """§5 version metadata: exactly the five keys."""
    assert set(meta) == VERSION_META_KEYS, f"version metadata keys {sorted(meta)}"
    assert meta["version"] == version
    assert type(meta["version"]) is int
    assert_ts(meta["created_time"])
    assert meta["destroyed"] is destroyed
    if deleted:
        assert_ts(meta["deletion_time"])
    else:
        assert meta["deletion_time"] == ""
    assert meta["custom_metadata"] == custom_metadata


def assert_key_metadata(data: dict) -> None:
    """§5 GET metadata: required keys, only the known OpenBao extras."""
    keys = set(data)
    assert KEY_META_KEYS <= keys, f"missing metadata keys {sorted(KEY_META_KEYS - keys)}"
    assert keys <= KEY_META_KEYS | KEY_META_OPTIONAL, f"unexpected metadata keys {sorted(keys - KEY_META_KEYS - KEY_META_OPTIONAL)}"
    assert data["delete_version_after"] == "0s"
    assert isinstance(data["versions"], dict)
    for num, entry in data["versions"].items():
        assert num.isdigit(), f"version key {num!r} is not a decimal string"
        assert set(entry) == VERSION_ENTRY_KEYS, f"version entry keys {sorted(entry)}"
        assert_ts(entry["created_time"])
        assert entry["deletion_time"] == "" or TS_RE.match(entry["deletion_time"])
        assert isinstance(entry["destroyed"], bool)
    for k in ("created_time", "updated_time"):
        assert_ts(data[k])


def assert_not_found_plain(exc) -> None:
    """`404 {"errors":[]}` seen through hvac.exceptions.InvalidPath."""
    assert exc.errors == [], f"errors should be [] but are {exc.errors!r}"
    assert exc.json == {"errors": []}, exc.json
