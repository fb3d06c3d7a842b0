"""Runtime policies persisted in the store: one JSON file, ``policies.json`` at the store root.

Written whole through a temporary file, fsync and rename (``atomic.write_atomic``), so after a
crash or ``kill -9`` the file holds either the previous table or the new one, never a mix. The
content is plain data (model name -> field values); validation lives in ``core.runtime``.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from modelrunner.store.atomic import write_atomic

FILENAME = "policies.json"
VERSION = 1
log = logging.getLogger(__name__)


class PolicyFile:
    def __init__(self, root: Path) -> None:
        self.path = root / FILENAME
        self._lock = threading.Lock()

    def read(self) -> dict[str, dict[str, Any]]:
        """The stored table; empty when there is none. A file that is not ours (edited by hand
        into something else) is reported and ignored rather than stopping the runner."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("ignoring unreadable runtime policies in %s: %s", self.path, exc)
            return {}
        table = data.get("policies") if isinstance(data, dict) else None
        if not isinstance(table, dict):
            log.error("ignoring %s: no 'policies' object", self.path)
            return {}
        return {str(k): v for k, v in table.items() if isinstance(v, dict)}

    def write(self, table: dict[str, dict[str, Any]]) -> None:
        body = {"version": VERSION, "policies": dict(sorted(table.items()))}
        data = json.dumps(body, indent=2, sort_keys=True).encode() + b"\n"
        with self._lock:
            write_atomic(self.path, data)
