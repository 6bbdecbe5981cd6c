"""Shared by the consultation tests: a served app wired to the HIS stand-in, a hospital with a doctor (a console
account linked to a Practitioner) and free slots, patients at a kiosk with strong sessions, mini-program users."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from care import consultations, kiosks, patients
from care.doctor_models import PractitionerSlot
from care.models import Patient, Practitioner
from core.auth import issue_session
from core.models import Hospital, User
from tests.console_support import console_login, make_console_user

CALLBACK_SECRET = "his-callback-secret"
ICE = [{"urls": "stun:stun.example.org:3478"}]


def ws_url(live, path: str) -> str:
    return live.url(path).replace("http", "ws", 1)


class Site:
    """One hospital: a kiosk, a doctor with slots, the HIS stand-in; helpers to act as each party."""

    def __init__(self, live, his, hospital, kiosk, kiosk_key, practitioner, doctor_user):
        self.live, self.his, self.hospital = live, his, hospital
        self.kiosk, self.kiosk_key = kiosk, kiosk_key
        self.practitioner, self.doctor_user = practitioner, doctor_user

    @property
    def redis(self):
        return self.live.app.ctx.redis

    async def slot(self, practitioner: Practitioner | None = None, *, hours: float = 2, status: str = "free"):
        start = datetime.now(timezone.utc) + timedelta(hours=hours)
        return await PractitionerSlot.create(practitioner=practitioner or self.practitioner, start=start,
                                             end=start + timedelta(minutes=15), status=status)

    async def patient(self, name: str, phone: str) -> Patient:
        return await patients.new_patient(name=name, sex="female", phone=phone, hospital_id=self.hospital.id,
                                          secret_key=self.live.app.ctx.settings.secret_key)

    async def kiosk_session(self, patient: Patient, *, strong: bool = True) -> str:
        """A session at the kiosk as a face login opens it, made strong with the phone's last four digits."""
        token, session = await kiosks.start_session(self.redis, self.kiosk, patient, ttl=900)
        if strong:
            await kiosks.give_digits(self.redis, session, patient.phone[-4:])
        return token

    async def kiosk_call(self, method: str, path: str, session: str | None, **kwargs):
        headers = {"X-Kiosk-Key": self.kiosk_key, **({"Authorization": f"Bearer {session}"} if session else {})}
        status, _, body = await self.live.request(method, path, headers=headers, **kwargs)
        return status, (json.loads(body) if body else None)

    async def mp_user(self, openid: str, *bound: Patient) -> str:
        """A mini-program user bound to ``bound`` patients; their JWT."""
        user = await User.create(mp_openid=openid, name=openid)
        for patient in bound:
            await kiosks.bind_patient(user, patient)
        return issue_session(self.live.app.ctx.settings.secret_key, user_id=user.id, openid=openid,
                             roles=["patient"])

    async def mp(self, method: str, path: str, jwt: str, **kwargs):
        status, _, body = await self.live.request(method, path, headers={"Authorization": f"Bearer {jwt}"}, **kwargs)
        return status, (json.loads(body) if body else None)

    async def doctor(self):
        return await console_login(self.live, "dr.li", "doctor-password-1")

    async def wait_status(self, consultation_id: int, status: str, *, timeout: float = 15.0) -> None:
        """Until the background poll (or a callback) brought the consultation to ``status``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            c = await consultations.Consultation.get(id=consultation_id)
            if c.status == status:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"consultation {consultation_id} never reached {status} (is {c.status})")


async def make_site(serve, settings_for, database_url: str, redis_url: str = "", *, his_poll_interval: float = 0.2,
                    **overrides) -> Site:
    """A served app with a HIS stand-in, a hospital, a kiosk and a doctor. ``his_poll_interval=0``: no polling, so a
    test of the HIS's callback is not raced by the poll reading the same answer first."""
    from tests.his_standin import HISStandIn

    his = HISStandIn()
    await his.start()
    settings = settings_for(database_url, redis_url, his_base_url=his.base_url, his_poll_interval=his_poll_interval,
                            his_callback_secret=CALLBACK_SECRET, ice_servers=ICE, **overrides)
    live = await serve(settings)
    hospital = await Hospital.create(name="市第一人民医院")
    kiosk, key = await kiosks.add_kiosk("门诊大厅1号机", hospital_id=hospital.id)
    practitioner = await Practitioner.create(his_id="pr-li", name="李医生", department="心内科",
                                             specialties=["高血压"], hospital=hospital)
    user = await make_console_user("doctor", "dr.li", "doctor-password-1", name="李医生")
    await consultations.link_doctor(user, practitioner)
    return Site(live, his, hospital, kiosk, key, practitioner, user)
