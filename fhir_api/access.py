"""Who reads over ``/fhir`` and which patients they may read.

- ``Authorization: Bearer mac_…``: a registered hospital system (``python -m care add-api-client``): every patient.
- ``X-Kiosk-Key`` + ``Authorization: Bearer <kiosk session>``: the session's patient, once the second factor is given.
- ``Authorization: Bearer <mini-program JWT>``: the patients the user is bound to.
"""

from __future__ import annotations

from dataclasses import dataclass

from sanic import Request

from care import api_clients, kiosks
from care.kiosk_models import PatientBinding
from core.auth import read_session
from core.errors import Forbidden, Unauthorized
from core.models import User


@dataclass(frozen=True)
class Reader:
    label: str  # for logs: api:<name> | kiosk:<id> | mp:<user id>
    patient_ids: frozenset | None  # None: every patient

    def may_read(self, patient_id: int) -> bool:
        return self.patient_ids is None or patient_id in self.patient_ids


async def current_reader(request: Request) -> Reader:
    cached = getattr(request.ctx, "fhir_reader", None)
    if cached is not None:
        return cached
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if request.headers.get("x-kiosk-key"):
        kiosk = await kiosks.authenticate(request.headers.get("x-kiosk-key"))
        session = await kiosks.read_session(request.app.ctx.redis, kiosk, token)
        kiosks.require_strong(session)
        reader = Reader(f"kiosk:{kiosk.id}", frozenset({session.patient_id}))
    elif not token:
        raise Unauthorized("缺少访问令牌（Authorization: Bearer）", code="token_required",
                           headers={"WWW-Authenticate": "Bearer"})
    elif api_clients.is_client_token(token):
        client = await api_clients.authenticate(token)
        reader = Reader(f"api:{client.name}", None)
    else:
        session = read_session(request.app.ctx.settings.secret_key, token)
        user = await User.get_or_none(id=session.user_id)
        if user is None or not user.active:
            raise Forbidden("账号无效或已停用", code="account_disabled")
        ids = await PatientBinding.filter(user_id=user.id).values_list("patient_id", flat=True)
        reader = Reader(f"mp:{user.id}", frozenset(ids))
    request.ctx.fhir_reader = reader
    return reader
