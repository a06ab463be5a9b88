"""Extractors for archives nobody should trust: droplets (tar) and app packages (zip).

Both refuse, naming the first offending entry, anything that could write outside the
destination or exhaust the disk (DESIGN.md section 9); the shared rules live in `common`."""

from overcast.staging.archives.common import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_RATIO,
    DEFAULT_RATIO_FLOOR_BYTES,
    ArchiveLimits,
    EntryKind,
    UnsafeArchive,
    entry_path,
)
from overcast.staging.archives.tars import check_archive, safe_extract
from overcast.staging.archives.zips import ZipEntryInfo, check_zip, safe_extract_zip

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_RATIO",
    "DEFAULT_RATIO_FLOOR_BYTES",
    "ArchiveLimits",
    "EntryKind",
    "UnsafeArchive",
    "ZipEntryInfo",
    "check_archive",
    "check_zip",
    "entry_path",
    "safe_extract",
    "safe_extract_zip",
]
