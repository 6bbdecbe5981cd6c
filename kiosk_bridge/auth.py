"""Who is calling: the kiosk (``X-Kiosk-Key``) and, for a patient's calls, its session (``Authorization: Bearer``)."""

from __future__ import annotations

from sanic import Request

from care import kiosks
from care.kiosk_models import Kiosk
from care.kiosks import KioskSession


async def current_kiosk(request: Request) -> Kiosk:
    cached = getattr(request.ctx, "kiosk", None)
    if cached is None:
        cached = request.ctx.kiosk = await kiosks.authenticate(request.headers.get("x-kiosk-key"))
    return cached


async def current_session(request: Request) -> KioskSession:
    """The kiosk first (a session is only good with the key of the kiosk it was opened at), then its session."""
    kiosk = await current_kiosk(request)
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    return await kiosks.read_session(request.app.ctx.redis, kiosk, token if scheme.lower() == "bearer" else "")
