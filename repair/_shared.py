"""Small helpers the repair services share (not part of the domain's public surface)."""

from __future__ import annotations

import contextlib
import unicodedata
from typing import Any

from tortoise.transactions import in_transaction

from core.errors import Unprocessable


@contextlib.asynccontextmanager
async def transaction(using_db=None):
    """The caller's transaction when it passes one (an import stores many devices at once), else a new one."""
    if using_db is not None:
        yield using_db
        return
    async with in_transaction() as conn:
        yield conn


def ref_id(obj: Any) -> int | None:
    """A model instance or its id (an int, or digits as a transport may pass them) → the id."""
    if obj is None:
        return None
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj
    if isinstance(obj, str) and obj.strip().isdigit():
        return int(obj)
    found = getattr(obj, "id", None)
    if isinstance(found, int):
        return found
    raise Unprocessable("编号无效", code="invalid_id")


def squeeze(text: Any) -> str:
    """NFKC (full-width → half-width) with all whitespace removed: how people's typing of codes is compared."""
    return "".join(unicodedata.normalize("NFKC", str(text or "")).split())


def clean_text(text: Any, *, nfkc: bool = False) -> str:
    """Trimmed, inner whitespace runs collapsed to one space. NFKC only for Latin codes (models): applied to
    Chinese names it would turn full-width punctuation such as （） into ASCII."""
    text = str(text or "")
    if nfkc:
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.split())
