"""How the robot learns: a review queue of what it could not answer well, and agents' replies turned into
knowledge (a variant used at once, a new entry once an administrator approves)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from core import audit
from core.errors import Conflict, Forbidden, NotFound, Unprocessable
from core.models import User
from core.textutil import storable
from knowledge.entries import bump_version
from knowledge.models import TIERS, KBEntry, KBProposal, QuestionLog

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def review_queue(limit: int = 100) -> list[QuestionLog]:
    """Questions to look at, oldest first: answers people found unhelpful, and what the robot declined or could
    only hand off without a matching entry."""
    return await QuestionLog.filter(reviewed_at=None).filter(
        Q(feedback="unhelpful") | Q(kind="decline", entry_id=None) | Q(kind="handoff", entry_id=None)
    ).exclude(text="").order_by("created_at").limit(limit)


async def mark_reviewed(log_id: int, admin: User) -> QuestionLog:
    _require(admin, "admin")
    log = await QuestionLog.get_or_none(id=log_id)
    if log is None:
        raise NotFound("该问题记录不存在", code="question_not_found")
    log.reviewed_at = _now()
    async with in_transaction() as conn:
        await log.save(using_db=conn, update_fields=["reviewed_at"])
        await audit.record("kb.question_reviewed", "kb_question", log.id, actor=admin,
                           changes={"text": log.text[:200], "kind": log.kind}, using_db=conn)
    return log


def _require(user: User, *roles: str) -> None:
    if user.role not in roles:
        raise Forbidden("当前身份无权进行此操作", code="role_required")


async def save_reply(agent: User, *, question: str, kind: str, entry_id: str, answer: str = "",
                     device_type: str = "", tier: str = "basic", source_log_id: int | None = None) -> KBProposal:
    """One action from an agent's reply: ``variant`` adds the question to an existing entry (in use at once);
    ``entry`` proposes a new entry with the agent's answer (in use once an administrator approves)."""
    _require(agent, "agent", "admin")
    question = " ".join(storable(question).split())[:256]
    if not question:
        raise Unprocessable("问题不能为空", code="empty_question")
    if kind not in ("variant", "entry"):
        raise Unprocessable("kind 须为 variant 或 entry", code="bad_kind")
    async with in_transaction() as conn:
        if kind == "variant":
            entry = await KBEntry.filter(id=entry_id, active=True).using_db(conn).select_for_update().first()
            if entry is None:
                raise NotFound("知识条目不存在", code="entry_not_found")
            if question not in entry.variants and question != entry.question:
                entry.variants = [*entry.variants, question]
                await entry.save(using_db=conn)
                await bump_version(conn)
            status = "applied"
        else:
            answer = storable(answer).strip()
            if not _ID.match(entry_id or ""):
                raise Unprocessable("条目 id 只能包含字母、数字、-、_、.", code="bad_entry_id")
            if not answer or not device_type.strip() or tier not in TIERS:
                raise Unprocessable("新条目需要答案、设备类型和级别", code="incomplete_entry")
            if await KBEntry.filter(id=entry_id).using_db(conn).exists():
                raise Conflict("该条目 id 已存在", code="entry_exists")
            await KBEntry.create(id=entry_id, device_type=device_type.strip()[:32], question=question, variants=[],
                                 answer=answer, tier=tier, active=False, using_db=conn)
            status = "pending"
        proposal = await KBProposal.create(kind=kind, entry_id=entry_id, question=question, answer=answer,
                                           device_type=device_type[:32], tier=tier, source_log_id=source_log_id,
                                           proposed_by=agent, status=status, using_db=conn)
        if source_log_id:
            await QuestionLog.filter(id=source_log_id).using_db(conn).update(reviewed_at=_now())
        await audit.record(f"kb.{kind}_proposed", "kb_entry", entry_id, actor=agent,
                           changes={"question": question, "status": status}, using_db=conn)
    return proposal


async def decide(proposal_id: int, admin: User, approve: bool) -> KBProposal:
    """An administrator approves or rejects: a new entry goes live or is dropped; a rejected variant is removed."""
    _require(admin, "admin")
    async with in_transaction() as conn:
        proposal = await KBProposal.filter(id=proposal_id).using_db(conn).select_for_update().first()
        if proposal is None:
            raise NotFound("该建议不存在", code="proposal_not_found")
        if proposal.status not in ("pending", "applied"):
            raise Conflict("该建议已处理", code="proposal_decided")
        entry = await KBEntry.filter(id=proposal.entry_id).using_db(conn).select_for_update().first()
        if proposal.kind == "entry" and entry is not None:
            if approve:
                entry.active = True
                await entry.save(using_db=conn)
            else:
                await entry.delete(using_db=conn)
        elif proposal.kind == "variant" and entry is not None and not approve:
            entry.variants = [v for v in entry.variants if v != proposal.question]
            await entry.save(using_db=conn)
        proposal.status = "approved" if approve else "rejected"
        proposal.decided_by, proposal.decided_at = admin, _now()
        await proposal.save(using_db=conn)
        await bump_version(conn)
        await audit.record("kb.proposal_decided", "kb_entry", proposal.entry_id, actor=admin,
                           changes={"proposal": proposal.id, "status": proposal.status}, using_db=conn)
    return proposal


async def proposals(status: str | None = None) -> list[KBProposal]:
    query = KBProposal.all() if status is None else KBProposal.filter(status=status)
    return await query.order_by("created_at").prefetch_related("proposed_by")
