"""``answer(text, ctx)``: what the robot says to a question, graded by the hospital's needs.

- an explicit request for a person ("转人工", "报修", "叫工程师") → ``handoff``;
- chit-chat, or nothing in the knowledge base close enough → ``decline`` (a short reply saying what the robot does);
- two entries for different devices nearly tied, no device known → ``clarify`` ("which device?", once);
- a question too vague for one entry — one device's entries confidently tied, or nothing said but "报警"/"坏了"
  besides the device ("呼吸机报警了") → ``clarify`` by listing that device's relevant entries ("您说的可能是以下
  情况…"): a number answers with that entry (or hands off an ``advanced`` one), anything else is a new question
  (with only one relevant entry, it is asked back as below);
- a confident ``basic`` entry → ``answer`` with its documents and a video course, then "was this helpful?";
- a relevant but unsure ``basic`` match → ``clarify`` by asking back "您是想问 …吗？" with the entry's question:
  "1"/"是" answers it, "2"/"不是" hands off (and puts the question in the review queue), anything else is a new
  question;
- an ``advanced`` entry → ``handoff`` to the remote service centre.

Conversation state per person lives in Redis for ten minutes: a pending clarification, confirmation or feedback.
Every question is logged with the choice, the confidence and, later, the feedback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from core.redis import Redis
from core.textutil import storable
from knowledge import retrieval
from knowledge.entries import current_version
from knowledge.models import KBEntry, QuestionLog

log = logging.getLogger(__name__)

STATE_TTL = 600
MAX_QUESTION = 500  # characters searched; the rest of a long message is noise for retrieval
REFRESH_EVERY = 2.0  # seconds between a worker's checks of the knowledge-base version
HELPFUL = {"1", "有用", "有帮助", "解决了", "好了", "谢谢"}
UNHELPFUL = {"2", "没用", "没帮助", "没有帮助", "不行", "没解决", "还是不行"}
CONFIRMED = {"1", "是", "是的", "对", "对的", "没错", "嗯", "就是"}
NOT_MEANT = {"2", "不是", "不对", "都不是", "否", "转人工"}

CAN_DO = ("我是设备服务助手，可以解答设备的常见故障（例如“呼吸机报警E-05怎么办”），"
          "也可以帮您报修：扫描设备二维码，或回复“转人工”。")
# A patient's care is the doctor's: the robot says so instead of "I can't answer that".
CLINICAL_REPLY = "病人的诊疗问题（用药、剂量、参数怎么设、数值是否正常）请咨询主管医生或按科室规范处理，我只解答设备本身的问题。"
ASK_FEEDBACK = "这个回答有帮助吗？回复 1 有帮助，2 没帮助。"


@dataclass(frozen=True)
class Answer:
    kind: str  # answer | clarify | handoff | decline
    text: str
    entry_id: str | None = None
    confidence: float | None = None
    docs: tuple = ()
    videos: tuple = ()
    log_id: int | None = None
    tier: str | None = None  # of the entry chosen: a hand-off's ticket knows what kind of fault it is
    # The question this reply is about when it answers a follow-up ("1", "不是"): a hand-off's ticket describes it.
    about: str | None = None


@dataclass
class AskContext:
    openid: str
    redis: Redis
    device_type: str | None = None  # from a recent scan
    device_name: str | None = None
    hospital_id: int | None = None


@dataclass
class KnowledgeIndex:
    """This worker's index, rebuilt when the knowledge base's version changes (any worker, or a command)."""

    index: retrieval.Index | None = None
    source: tuple = ()  # the knowledge base's version and time of change
    checked_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def current(self) -> retrieval.Index:
        if self.index is not None and time.monotonic() - self.checked_at < REFRESH_EVERY:
            return self.index
        async with self._lock:
            if self.index is not None and time.monotonic() - self.checked_at < REFRESH_EVERY:
                return self.index
            source = await current_version()
            if source != self.source or self.index is None:
                entries = [retrieval.KBEntry(id=e.id, device_type=e.device_type, question=e.question,
                                             variants=tuple(e.variants), answer=e.answer, tier=e.tier,
                                             docs=tuple(e.docs), videos=tuple(e.videos))
                           for e in await KBEntry.filter(active=True)]
                # Building is CPU work (10,000 entries take seconds): keep it off the event loop.
                self.index = await asyncio.to_thread(retrieval.Index.build, entries)
                self.source = source
            self.checked_at = time.monotonic()
            return self.index

    def expire(self) -> None:
        """A ``kb.changed`` event: look again at the next question."""
        self.checked_at = 0.0


KB = KnowledgeIndex()  # this worker's


class QuestionLogWriter:
    """Questions the robot did not answer from an entry are written in batches: a busy chat then costs one INSERT
    every ``delay`` seconds instead of one per message. Answers are written at once (their id carries the feedback).
    ``flush()`` at shutdown writes what is left."""

    def __init__(self, delay: float = 0.2):
        self.delay = delay
        self._pending: list[QuestionLog] = []
        self._task: asyncio.Task | None = None

    def add(self, row: QuestionLog) -> None:
        self._pending.append(row)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.delay)
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - a background write: log it, never break the next question
            log.exception("question log batch not written")

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            await QuestionLog.bulk_create(batch)


LOGS = QuestionLogWriter()  # this worker's


def _state_key(openid: str) -> str:
    return f"bot:conv:{openid}"


async def _state(ctx: AskContext) -> dict:
    raw = await ctx.redis.get(_state_key(ctx.openid))
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


async def _remember(ctx: AskContext, state: dict | None) -> None:
    if state:
        await ctx.redis.set(_state_key(ctx.openid), json.dumps(state, ensure_ascii=False), ex=STATE_TTL)
    else:
        await ctx.redis.delete(_state_key(ctx.openid))


async def answer(text: str, ctx: AskContext, kb: KnowledgeIndex = KB) -> Answer:
    said = (text or "").strip()
    state = await _state(ctx)
    if state.get("pending") == "feedback" and said in HELPFUL | UNHELPFUL:
        return await _feedback(ctx, state, helpful=said in HELPFUL)
    if state.get("pending") == "clarify" and said.isdigit() and 1 <= int(said) <= len(state.get("options", [])):
        await _remember(ctx, None)
        chosen = state["options"][int(said) - 1]
        reply = await _respond(ctx, state.get("question", ""), kb, device_type=chosen, clarified=True)
        return Answer(**{**reply.__dict__, "about": state.get("question")})
    if state.get("pending") == "confirm":
        await _remember(ctx, None)  # asked back once: whatever comes next settles it
        if said in CONFIRMED:
            return await _settle(ctx, state, kb, state.get("entry_id"))
        if said in NOT_MEANT:
            return await _not_meant(ctx, state)
    if state.get("pending") == "choose":
        await _remember(ctx, None)  # listed once: a number picks, anything else is a new question
        choices = state.get("entries", [])
        if said.isdigit() and 1 <= int(said) <= len(choices):
            return await _settle(ctx, state, kb, choices[int(said) - 1])
    return await _respond(ctx, said, kb, device_type=ctx.device_type)


async def _respond(ctx: AskContext, said: str, kb: KnowledgeIndex, *, device_type: str | None,
                   clarified: bool = False) -> Answer:
    if not retrieval.normalise_for_check(said):
        return await _log(ctx, said, Answer("decline", "请用文字描述设备和故障现象。" + CAN_DO), device_type)
    if retrieval.wants_person(said):
        return await _log(ctx, said, Answer("handoff", _handoff_text(ctx)), device_type)
    if retrieval.is_chitchat(said):
        return await _log(ctx, said, Answer("decline", CAN_DO), device_type)
    index = await kb.current()
    matches = index.search(said[:MAX_QUESTION], device_type=device_type, limit=retrieval.CONSIDERED)
    clinical = retrieval.is_clinical(said)
    decision = retrieval.decide(matches, device_known=clarified or device_type is not None, clinical=clinical)
    if decision.kind == "decline":
        text = CLINICAL_REPLY if clinical else "抱歉，这个问题我还不会回答。"
        return await _log(ctx, said, Answer("decline", text + CAN_DO), device_type)
    best = matches[0]
    if decision.kind == "which_device":
        options = [m.entry.device_type for m in decision.options]
        await _remember(ctx, {"pending": "clarify", "options": options, "question": said})
        labels = "，".join(f"{i} {retrieval.device_label(t)}" for i, t in enumerate(options, 1))
        return await _log(ctx, said, Answer("clarify", f"请问是哪台设备？回复 {labels}。",
                                            confidence=best.confidence), device_type)
    if decision.kind == "which_problem":
        listed = "；".join(f"{i} “{m.entry.question}”" for i, m in enumerate(decision.options, 1))
        reply = Answer("clarify", f"您说的可能是以下情况，请回复序号：{listed}。都不是请补充具体现象，或回复“转人工”。",
                       entry_id=best.entry.id, confidence=best.confidence)
        logged = await _log(ctx, said, reply, device_type, keep_id=True)
        await _remember(ctx, {"pending": "choose", "log_id": logged.log_id, "question": said,
                              "entries": [m.entry.id for m in decision.options],
                              "confidences": {m.entry.id: m.confidence for m in decision.options}})
        return logged
    entry = best.entry
    if entry.tier == "advanced":
        return await _log(ctx, said, _engineer_needed(ctx, entry, best.confidence), device_type)
    if decision.kind == "unsure":
        # Relevant but unsure: ask back rather than guess, or hand off a question the robot may well know.
        reply = Answer("clarify", f"您是想问“{entry.question}”吗？回复 1 是，2 不是（转人工）。", entry_id=entry.id,
                       confidence=best.confidence, tier=entry.tier)
        logged = await _log(ctx, said, reply, device_type, keep_id=True)
        await _remember(ctx, {"pending": "confirm", "log_id": logged.log_id, "entry_id": entry.id,
                              "confidence": best.confidence, "question": said})
        return logged
    return await _give(ctx, await _log(ctx, said, _entry_answer(entry, best.confidence), device_type))


def _engineer_needed(ctx: AskContext, entry: retrieval.KBEntry, confidence: float | None) -> Answer:
    """An ``advanced`` entry: the fault is an engineer's, the question goes to the remote service centre."""
    return Answer("handoff", "该问题需要工程师处理。" + _handoff_text(ctx), entry_id=entry.id, confidence=confidence,
                  tier=entry.tier)


def _entry_answer(entry: retrieval.KBEntry, confidence: float | None) -> Answer:
    return Answer("answer", _answer_text(entry), entry_id=entry.id, confidence=confidence, docs=entry.docs,
                  videos=entry.videos[:1], tier=entry.tier)


async def _give(ctx: AskContext, logged: Answer) -> Answer:
    """An answer given: ask whether it helped, the feedback going to its question's log row."""
    await _remember(ctx, {"pending": "feedback", "log_id": logged.log_id, "entry_id": logged.entry_id})
    return logged


async def _settle(ctx: AskContext, state: dict, kb: KnowledgeIndex, entry_id: str | None) -> Answer:
    """"是" to the entry asked about, or the number of one listed: that entry answers the question (its log row
    becomes an answer from it), or, an ``advanced`` one, hands it off."""
    index = await kb.current()
    entry = next((e for e in index.entries if e.id == entry_id), None)
    question = state.get("question", "")
    if entry is None:  # taken out of the knowledge base meanwhile: look again
        reply = await _respond(ctx, question, kb, device_type=ctx.device_type)
        return Answer(**{**reply.__dict__, "about": question})
    confidence = state.get("confidences", {}).get(entry.id, state.get("confidence"))
    if entry.tier == "advanced":
        if state.get("log_id"):
            await QuestionLog.filter(id=state["log_id"]).update(kind="handoff", entry_id=entry.id)
        return Answer(**{**_engineer_needed(ctx, entry, confidence).__dict__, "about": question})
    if state.get("log_id"):
        await QuestionLog.filter(id=state["log_id"]).update(kind="answer", entry_id=entry.id)
    reply = Answer(**{**_entry_answer(entry, confidence).__dict__, "log_id": state.get("log_id"), "about": question})
    return await _give(ctx, reply)


async def _not_meant(ctx: AskContext, state: dict) -> Answer:
    """"不是": a person takes the question; it goes to the review queue as a question the robot could not answer."""
    if state.get("log_id"):
        await QuestionLog.filter(id=state["log_id"]).update(feedback="unhelpful")
    return Answer("handoff", "好的。" + _handoff_text(ctx), about=state.get("question"))


def _answer_text(entry: retrieval.KBEntry) -> str:
    parts = [entry.answer.strip()]
    if entry.docs:
        parts.append("参考资料：" + "；".join(d["title"] for d in entry.docs))
    if entry.videos:
        parts.append(f"推荐视频课程：{entry.videos[0]['title']}")
    parts.append(ASK_FEEDBACK)
    return "\n".join(parts)


def _handoff_text(ctx: AskContext) -> str:
    if ctx.device_name:
        return f"已为您转接远程服务中心（设备：{ctx.device_name}），客服会尽快联系您。"
    return "已为您转接远程服务中心。为便于客服了解设备，请扫描设备上的二维码报修。"


async def _feedback(ctx: AskContext, state: dict, *, helpful: bool) -> Answer:
    await _remember(ctx, None)
    if state.get("log_id"):
        await QuestionLog.filter(id=state["log_id"]).update(feedback="helpful" if helpful else "unhelpful")
    if helpful:
        return Answer("decline", "感谢反馈！如还有问题，请随时提问。", entry_id=state.get("entry_id"))
    return Answer("handoff", "抱歉没能帮到您。" + _handoff_text(ctx), entry_id=state.get("entry_id"))


async def _log(ctx: AskContext, said: str, reply: Answer, device_type: str | None, *,
               keep_id: bool = False) -> Answer:
    row = QuestionLog(openid=ctx.openid, text=storable(said)[:2000], device_type=device_type, kind=reply.kind,
                      entry_id=reply.entry_id, confidence=reply.confidence)
    if reply.kind != "answer" and not keep_id:
        LOGS.add(row)
        return reply
    await row.save()
    return Answer(**{**reply.__dict__, "log_id": row.id})
