"""Text as people send it, made safe to store: control characters (NUL cannot even be stored in PostgreSQL)
removed, line breaks and tabs kept."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def storable(text: str) -> str:
    return _CONTROL.sub("", text or "")
