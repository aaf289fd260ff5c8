"""The JSON record a benchmark writes beside its printed table: when, where, what it measured."""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path


def write_record(path: Path, **fields: object) -> None:
    """Write ``fields`` to ``path`` as JSON, after the date (UTC) and the machine's processor."""
    path.parent.mkdir(exist_ok=True)
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        **fields,
    }
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")
