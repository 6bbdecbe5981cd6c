"""Mini-program subscribe messages when the HIS answers a consultation request, and the consent they need.

WeChat sends a mini-program user a subscribe message only as often as they said yes to it: each "accept" that
``wx.requestSubscribeMessage`` returns allows one message of that template (one-time subscriptions). The mini program
reports those answers (``record_consent``); each is one ``SubscribeCredit`` of the user for the template.

``ConsultationNotifier.on_answer`` listens to ``consultation.accepted`` / ``consultation.declined`` (one worker per
event). The mini-program users bound to the patient who have an ``mp_openid`` (the booker first) each get a
``ConsultationNotice`` row: ``pending`` when a credit could be taken for it (a conditional UPDATE ``count > 0``, in
the transaction creating the row), ``skipped`` otherwise (no subscription, or no template configured). Pending ones
are sent; a passing failure (network, WeChat busy) stays pending and the listener raises, so the bus delivers the
event again, up to ``MAX_ATTEMPTS`` sends; a final one (43101 no subscription, 47003 bad data, 40003 bad openid) is
kept as ``failed`` with the reason. With ``WECHAT_MP_SUBSCRIBE_LONG_TERM`` (a long-term template, which WeChat
allows medical mini programs) a credit is needed but not used up. A credit is never given back: WeChat consumed it, or the user never had it. The
row is unique per consultation, user and event, and each send is claimed by one delivery, so an event delivered
twice sends once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from care.consultation_models import Consultation, ConsultationNotice, SubscribeCredit
from care.kiosk_models import PatientBinding
from core import delivery
from core.errors import AppError, BadRequest, UpstreamError, WeChatAPIError
from core.events import Event
from core.models import User
from core.settings import Settings
from integrations.wechat import fit_subscribe_data

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # sends of one notice before a passing failure is kept as failed (as repair.messaging)
MAX_RESULTS = 20  # templates in one consent report; wx.requestSubscribeMessage asks for at most 3 at a time
# errcodes after which sending again cannot help: no subscription, data refused, openid or template unknown.
FINAL_ERRCODES = frozenset({40003, 40037, 43101, 47003})
PAGE = "pages/consultation/detail?id={id}"
# What each configured template is for, as the mini program shows it.
TEMPLATE_TITLES = {"consultation_answered": "问诊预约结果"}
RESULTS = {"accepted": "已接受", "declined": "未接受"}
ACCEPTED_NOTE = "请按时进入诊室"
DECLINED_NOTE = "请改约其他时段"
NOT_SUBSCRIBED = "用户未订阅"
NO_TEMPLATE = "未配置问诊结果订阅消息模板（WECHAT_MP_TEMPLATE_CONSULTATION）"


def subscribe_templates(settings: Settings) -> dict[str, str]:
    """purpose → template id of the subscribe messages configured (unset ones left out)."""
    configured = {"consultation_answered": settings.wechat_mp_template_consultation}
    return {purpose: template_id for purpose, template_id in configured.items() if template_id}


# -- consent -----------------------------------------------------------------------------------------------------------
async def record_consent(user: User, results: Any, settings: Settings) -> dict:
    """Count the user's answers to ``wx.requestSubscribeMessage`` (``{"<tmplId>": "accept" | "reject" | "ban" |
    "filter", "errMsg": ...}``, as it returned them): one credit per "accept" of a template this server sends.
    Anything else is listed as ignored with why; ``errMsg`` (the call's own status) is not a template."""
    if not isinstance(results, dict):
        raise BadRequest("字段 results 须为 wx.requestSubscribeMessage 返回的对象", code="invalid_field",
                         details={"field": "results"})
    answers = {key: value for key, value in results.items() if key != "errMsg"}
    if len(answers) > MAX_RESULTS:
        raise BadRequest(f"字段 results 最多 {MAX_RESULTS} 项", code="invalid_field", details={"field": "results"})
    known = set(subscribe_templates(settings).values())
    counted, ignored = [], []
    for template_id, answer in answers.items():
        if template_id not in known:
            ignored.append({"template_id": template_id, "reason": "unknown_template"})
        elif answer != "accept":
            ignored.append({"template_id": template_id, "reason": "not_accepted"})
        else:
            await _add_credit(user, template_id)
            counted.append(template_id)
    if counted:
        log.info("user %s subscribed to %s", user.id, ", ".join(counted))
    return {"counted": counted, "ignored": ignored, "credits": await credits_of(user, sorted(known))}


async def _add_credit(user: User, template_id: str) -> None:
    """One more credit, atomically: two reports at once both count."""
    await SubscribeCredit.get_or_create(user_id=user.id, template_id=template_id)
    await SubscribeCredit.filter(user_id=user.id, template_id=template_id).update(count=F("count") + 1)


async def credits_of(user: User, template_ids: list[str]) -> dict[str, int]:
    """template id → messages the user still allows (0 for a template never accepted)."""
    rows = await SubscribeCredit.filter(user_id=user.id, template_id__in=template_ids) if template_ids else []
    held = {row.template_id: row.count for row in rows}
    return {template_id: held.get(template_id, 0) for template_id in template_ids}


async def subscriptions_view(user: User, settings: Settings) -> dict:
    """What the mini program should ask for (``tmpl_ids`` for ``wx.requestSubscribeMessage``) and what the user still
    allows, so it asks again when a credit is used up."""
    templates = subscribe_templates(settings)
    credits = await credits_of(user, list(templates.values()))
    return {"tmpl_ids": list(templates.values()),
            "templates": [{"template_id": template_id, "purpose": purpose, "title": TEMPLATE_TITLES[purpose],
                           "credits": credits[template_id]} for purpose, template_id in templates.items()]}


# -- the notices -------------------------------------------------------------------------------------------------------
class ConsultationNotifier:
    """The listener of ``consultation.accepted`` / ``consultation.declined`` (registered in ``app.py``)."""

    def __init__(self, settings: Settings, wechat):
        self.settings = settings
        self.wechat = wechat

    async def on_answer(self, event: Event) -> None:
        kind = event.name.rsplit(".", 1)[-1]
        if kind not in RESULTS:
            return
        c = await Consultation.get_or_none(id=event.data.get("consultation_id")).prefetch_related(
            "practitioner", "slot")
        if c is None:
            return
        retry_later = False
        for notice in await self._owed(c, kind):
            if notice.status == "pending" and not await self._send(c, notice):
                retry_later = True
        if retry_later:
            raise UpstreamError("subscribe messages left to retry")  # the bus delivers this event again later

    async def _owed(self, c: Consultation, kind: str) -> list[ConsultationNotice]:
        return [await self._notice(c, user, kind) for user in await recipients(c)]

    async def _notice(self, c: Consultation, user: User, kind: str) -> ConsultationNotice:
        """The user's notice for this answer: the one made before (a repeated event), or a new one that took a
        credit (``pending``) or found none (``skipped``)."""
        existing = await ConsultationNotice.get_or_none(consultation_id=c.id, user_id=user.id, event=kind)
        if existing is not None:
            return existing
        template_id = self.settings.wechat_mp_template_consultation
        try:
            async with in_transaction() as conn:
                credit = SubscribeCredit.filter(user_id=user.id, template_id=template_id, count__gt=0).using_db(conn)
                if not template_id:
                    taken = False
                elif self.settings.wechat_mp_subscribe_long_term:  # one accept covers every later message
                    taken = await credit.exists()
                else:
                    taken = bool(await credit.update(count=F("count") - 1))
                status, reason = ("pending", "") if taken else ("skipped", NOT_SUBSCRIBED if template_id
                                                                 else NO_TEMPLATE)
                return await ConsultationNotice.create(
                    consultation_id=c.id, user_id=user.id, openid=user.mp_openid, event=kind,
                    template_id=template_id, status=status, last_error=reason, using_db=conn)
        except IntegrityError:  # made at the same moment by a redelivery: its credit stays taken, this one not
            return await ConsultationNotice.get(consultation_id=c.id, user_id=user.id, event=kind)

    async def _send(self, c: Consultation, notice: ConsultationNotice) -> bool:
        """True when settled (sent or failed for good); False when it should be tried again.

        Each attempt is claimed first (``core.delivery.claim``: a lease on the row): of two deliveries of the event
        at once, one sends; the other finds it taken and asks the bus to come back, by when it is settled."""
        claimed = await delivery.claim(ConsultationNotice, notice.id)
        notice = await ConsultationNotice.get(id=notice.id)
        if not claimed:
            return notice.status != "pending"
        try:
            await self.wechat.send_subscribe_message(notice.openid, notice.template_id, self.data(c, notice.event),
                                                     page=PAGE.format(id=c.id))
        except AppError as exc:
            passing = is_passing(exc) and notice.attempts < MAX_ATTEMPTS
            notice.status, notice.sending_until = ("pending" if passing else "failed"), None
            notice.last_error = describe(exc)[:500]
            await notice.save(update_fields=["status", "last_error", "sending_until"])
            log.warning("subscribe message for consultation %s to user %s %s: %s", c.id, notice.user_id,
                        "will be retried" if passing else "failed", notice.last_error)
            return not passing
        notice.status, notice.sent_at, notice.last_error = "sent", datetime.now(timezone.utc), ""
        notice.sending_until = None
        await notice.save(update_fields=["status", "last_error", "sent_at", "sending_until"])
        return True

    def data(self, c: Consultation, kind: str) -> dict:
        """The template's values, cut to WeChat's limits: doctor, department, slot time (local), result, a note."""
        when = c.slot.start if c.slot else (c.answered_at or c.requested_at)
        if kind == "declined":
            note = c.answer_note or DECLINED_NOTE
        else:
            note = ACCEPTED_NOTE
        return fit_subscribe_data({
            "name1": c.practitioner.name,
            "thing2": c.practitioner.department or "远程问诊",
            "time3": when.astimezone(ZoneInfo(self.settings.timezone)).strftime("%Y-%m-%d %H:%M"),
            "phrase4": RESULTS[kind],
            "thing5": note,
        })


async def recipients(c: Consultation) -> list[User]:
    """The active mini-program users bound to the consultation's patient who can receive a message (an
    ``mp_openid``), the one who booked it first."""
    bindings = await PatientBinding.filter(patient_id=c.patient_id).order_by("id").prefetch_related("user")
    users = [b.user for b in bindings if b.user.mp_openid and b.user.active]
    return sorted(users, key=lambda user: user.id != c.requested_by_id)


def is_passing(exc: AppError) -> bool:
    """Whether sending again may work: the network or WeChat failing, not WeChat refusing this message."""
    if isinstance(exc, WeChatAPIError) and exc.errcode in FINAL_ERRCODES:
        return False
    if exc.code == "wechat_not_configured":  # no mini-program appid/secret: waiting will not bring them
        return False
    return isinstance(exc, UpstreamError) and exc.status >= 500


def describe(exc: AppError) -> str:
    """The reason kept on a notice: WeChat's errcode and what it means, or the error's code and message."""
    if isinstance(exc, WeChatAPIError):
        return f"errcode {exc.errcode}: {exc.message}" + (f"（{exc.errmsg}）" if exc.errmsg else "")
    return f"{exc.code}: {exc.message}"
