"""Kiosk sessions on both Redis kinds (the in-process one and a real server): the Lua-guarded changes, the
tombstone of an ended session, the failure count and the one-time confirmation code."""

from __future__ import annotations

import asyncio

import pytest

from care import kiosks, patients
from core.errors import BadRequest, Forbidden, NotFound, Unauthorized
from core.models import User


@pytest.fixture
async def world(db, redis_client):
    patient = await patients.new_patient(name="王芳", phone="13912345678")
    lobby, _ = await kiosks.add_kiosk("门诊大厅1号机")
    ward, _ = await kiosks.add_kiosk("住院部2号机")
    return dict(redis=redis_client, patient=patient, lobby=lobby, ward=ward)


async def test_digits_failures_end_the_session_and_the_token_stays_refused(world):
    redis, lobby = world["redis"], world["lobby"]
    token, session = await kiosks.start_session(redis, lobby, world["patient"], ttl=60)
    assert token not in str(await redis.keys("kiosk:*"))  # only the token's digest is kept
    with pytest.raises(Unauthorized) as refused:
        await kiosks.read_session(redis, world["ward"], token)
    assert refused.value.code == "session_of_other_kiosk"
    with pytest.raises(BadRequest):
        await kiosks.give_digits(redis, session, "56a8")
    # Five wrong tries at once: exactly one of them is the last one, and none slips through.
    outcomes = await asyncio.gather(*(kiosks.give_digits(redis, session, "0000") for _ in range(5)),
                                    return_exceptions=True)
    codes = sorted(e.code for e in outcomes)
    assert codes == ["too_many_attempts"] + ["wrong_digits"] * 4
    with pytest.raises(Unauthorized) as refused:
        await kiosks.read_session(redis, lobby, token)
    assert refused.value.code == "session_ended"
    with pytest.raises(Unauthorized):
        await kiosks.give_digits(redis, session, "5678")
    assert 0 < await redis.ttl("kiosk:session:" + session.sid) <= 60  # the tombstone goes with the session's time


async def test_right_digits_and_ending(world):
    redis, lobby = world["redis"], world["lobby"]
    token, session = await kiosks.start_session(redis, lobby, world["patient"], ttl=60)
    with pytest.raises(Forbidden):
        kiosks.require_strong(await kiosks.read_session(redis, lobby, token))
    strong = await kiosks.give_digits(redis, session, "5678")
    assert strong.strong and (await kiosks.read_session(redis, lobby, token)).strong
    kiosks.require_strong(strong)
    await kiosks.end_session(redis, strong)
    with pytest.raises(Unauthorized) as refused:
        await kiosks.read_session(redis, lobby, token)
    assert refused.value.code == "session_ended"


async def test_confirmation_code_works_once_for_the_bound_user(world):
    redis, lobby, patient = world["redis"], world["lobby"], world["patient"]
    daughter = await User.create(name="女儿", role="patient", mp_openid="oDaughter")
    token, session = await kiosks.start_session(redis, lobby, patient, ttl=60)
    code, expires_in = await kiosks.confirmation_code(redis, session)
    assert 0 < expires_in <= 60
    with pytest.raises(Forbidden):
        await kiosks.confirm_from_mini_program(redis, daughter, code)
    await kiosks.bind_patient(daughter, patient)
    await kiosks.bind_patient(daughter, patient)  # binding twice is one binding
    assert [p.id for p in await kiosks.bound_patients(daughter)] == [patient.id]
    # Two confirmations of the same code at once: one wins.
    outcomes = await asyncio.gather(kiosks.confirm_from_mini_program(redis, daughter, code),
                                    kiosks.confirm_from_mini_program(redis, daughter, code), return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["NotFound", "Patient"]
    assert (await kiosks.read_session(redis, lobby, token)).strong
    with pytest.raises(NotFound):
        await kiosks.confirm_from_mini_program(redis, daughter, code)
