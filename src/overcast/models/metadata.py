"""CF metadata patches: keys with a null value are removed, others set."""

from __future__ import annotations

from collections.abc import Mapping

from overcast.models.resources import Metadata
from overcast.models.validation import check_annotations, check_labels


def _merged(current: Mapping[str, str], patch: Mapping[str, str | None]) -> dict[str, str]:
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def patch_metadata(
    current: Metadata,
    labels: Mapping[str, str | None] | None,
    annotations: Mapping[str, str | None] | None,
) -> Metadata:
    if labels:
        check_labels(labels)
    if annotations:
        check_annotations(annotations)
    return Metadata(
        labels=_merged(current.labels, labels or {}),
        annotations=_merged(current.annotations, annotations or {}),
    )
