"""Where a classifier judge comes from (a directory, or a hub id at a revision) and its
name in the report; kept apart so planning names a judge without loading judge code."""

from __future__ import annotations

from typing import Any


def classifier_source(settings: dict[str, Any], key: str) -> tuple[str, str | None]:
    """A classifier's directory (`path`) or hub id (`hf_id` at `revision`)."""
    if settings.get("path"):
        return settings["path"], None
    if settings.get("hf_id"):
        return settings["hf_id"], settings.get("revision")
    raise ValueError(f"{key} (kind hf_classifier) needs `path` (a directory) or `hf_id`")


def classifier_name(source: str, revision: str | None) -> str:
    """A classifier's name in the report: its directory or hub id (and revision)."""
    return f"hf:{source}" + (f"@{revision}" if revision else "")
