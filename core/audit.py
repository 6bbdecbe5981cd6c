"""The audit log: every change to devices, groups, tickets and people, with who and when."""

from __future__ import annotations

from typing import Any

from core.models import AuditEntry, User


async def record(action: str, entity: str, entity_id: Any, *, actor: User | None = None,
                 actor_label: str | None = None, changes: dict | None = None, using_db=None) -> AuditEntry:
    """Append one entry. Call it inside the same transaction as the change (``using_db``) so neither is lost alone."""
    label = actor_label or (actor.label() if actor else "system")
    return await AuditEntry.create(actor=actor, actor_label=label[:64], action=action, entity=entity,
                                   entity_id=str(entity_id), changes=changes or {}, using_db=using_db)


async def history(entity: str, entity_id: Any) -> list[AuditEntry]:
    return await AuditEntry.filter(entity=entity, entity_id=str(entity_id)).order_by("created_at", "id")
