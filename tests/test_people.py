"""People on both databases: WeChat sign-in (through the WeChat stand-in), invitation codes, binding."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from core import people
from core.auth import read_session
from core.errors import BadRequest, Conflict, Forbidden, NotFound, WeChatAPIError
from core.models import AuditEntry, Department, Hospital, InvitationCode, User
from core.redis import create_redis
from core.settings import Settings
from integrations.wechat import WeChatClient
from tests.wechat_standin import WeChatStandIn

APP_ID, APP_SECRET = "wx_people_service", "service-secret"
MP_APP_ID, MP_APP_SECRET = "wx_people_mini", "mini-secret"


@pytest.fixture
async def wechat():
    standin = WeChatStandIn(app_id=APP_ID, app_secret=APP_SECRET, mp_app_id=MP_APP_ID, mp_app_secret=MP_APP_SECRET)
    await standin.start()
    redis = create_redis(Settings(secret_key="t"))
    client = WeChatClient(Settings(secret_key="t", wechat_app_id=APP_ID, wechat_app_secret=APP_SECRET,
                                   wechat_mp_app_id=MP_APP_ID, wechat_mp_app_secret=MP_APP_SECRET,
                                   wechat_api_base=standin.base_url), redis)
    client.standin = standin
    yield client
    await client.close()
    await redis.aclose()
    await standin.stop()


@pytest.fixture
async def world(db):
    hospital = await Hospital.create(name="市第一人民医院")
    other = await Hospital.create(name="市中心医院")
    icu = await Department.create(hospital=hospital, name="重症医学科")
    foreign_dept = await Department.create(hospital=other, name="放射科")
    admin = await User.create(name="赵管理", role="admin", hospital=hospital, username="admin")
    root = await User.create(name="总管理员", role="admin", username="root")  # no hospital: every hospital
    nurse = await User.create(name="王护士", mp_openid="oMpNurse")
    return dict(hospital=hospital, other=other, icu=icu, foreign_dept=foreign_dept, admin=admin, root=root,
                nurse=nurse)


async def _expire(invitation: InvitationCode) -> None:
    await InvitationCode.filter(id=invitation.id).update(expires_at=datetime.now(timezone.utc) - timedelta(minutes=1))


async def _state(user: User) -> tuple:
    fresh = await User.get(id=user.id)
    return fresh.hospital_id, fresh.department_id, fresh.role, fresh.name, fresh.phone


# -- sign-in ------------------------------------------------------------------------------------------------------
async def test_mini_program_login_creates_the_user_once(db, wechat):
    wechat.standin.add_js_code("c1", "oMpNew", unionid="uNew")
    wechat.standin.add_js_code("c2", "oMpNew", unionid="uNew")
    first, created = await people.login_mini_program(wechat, "c1")
    again, created_again = await people.login_mini_program(wechat, "c2")
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    stored = await User.get(mp_openid="oMpNew")
    assert (stored.role, stored.hospital_id, stored.unionid, stored.openid) == ("staff", None, "uNew", None)
    assert await User.all().count() == 1


async def test_a_used_code_is_refused_and_creates_nobody(db, wechat):
    wechat.standin.add_js_code("once", "oMpOnce")
    await people.login_mini_program(wechat, "once")
    with pytest.raises(WeChatAPIError) as refused:
        await people.login_mini_program(wechat, "once")
    assert refused.value.status == 400 and "已使用" in refused.value.message
    assert await User.filter(mp_openid="oMpOnce").count() == 1


async def test_the_same_person_through_both_apps_is_one_user(db, wechat):
    wechat.standin.add_oauth_code("web", "oPublic", unionid="uSame")
    wechat.standin.add_js_code("mini", "oMini", unionid="uSame")
    from_h5 = await people.login_oauth(wechat, "web")
    from_mini, created = await people.login_mini_program(wechat, "mini")
    assert not created and from_mini.id == from_h5.id
    stored = await User.get(id=from_h5.id)
    assert (stored.openid, stored.mp_openid) == ("oPublic", "oMini")


async def test_a_deactivated_user_cannot_sign_in(world, wechat):
    await User.filter(id=world["nurse"].id).update(active=False)
    wechat.standin.add_js_code("c", "oMpNurse")
    with pytest.raises(Forbidden):
        await people.login_mini_program(wechat, "c")


async def test_simultaneous_first_logins_make_one_user(db, wechat):
    for i in range(4):
        wechat.standin.add_js_code(f"c{i}", "oMpTwin")
    users = await asyncio.gather(*(people.login_mini_program(wechat, f"c{i}") for i in range(4)))
    assert len({user.id for user, _ in users}) == 1
    assert await User.filter(mp_openid="oMpTwin").count() == 1


# -- invitations --------------------------------------------------------------------------------------------------
async def test_an_admin_creates_a_typeable_code_with_an_audit_entry(world):
    invitation = await people.create_invitation(world["admin"], world["hospital"].id, role="engineer",
                                                department_id=world["icu"].id, max_uses=3, ttl_days=2)
    stored = await InvitationCode.get(code=invitation.code)
    assert len(stored.code) == 8 and not set(stored.code) & set("0O1I")
    assert set(stored.code) <= set(people.CODE_ALPHABET)
    assert (stored.role, stored.max_uses, stored.uses, stored.department_id) == ("engineer", 3, 0, world["icu"].id)
    assert timedelta(days=1, hours=23) < stored.expires_at - datetime.now(timezone.utc) <= timedelta(days=2)
    entry = await AuditEntry.get(entity="invitation", entity_id=stored.code)
    assert (entry.action, entry.actor_id) == ("invitation.created", world["admin"].id)


async def test_only_admins_create_codes_and_only_for_their_hospital(world):
    nurse, admin, root = world["nurse"], world["admin"], world["root"]
    with pytest.raises(Forbidden):
        await people.create_invitation(nurse, world["hospital"].id)
    for role in ("agent", "engineer"):
        await User.filter(id=nurse.id).update(role=role)
        with pytest.raises(Forbidden):
            await people.create_invitation(await User.get(id=nurse.id), world["hospital"].id)
    with pytest.raises(Forbidden):
        await people.create_invitation(admin, world["other"].id)
    assert (await people.create_invitation(root, world["other"].id)).hospital_id == world["other"].id
    assert (await people.create_invitation(admin, None)).hospital_id == world["hospital"].id
    assert await InvitationCode.all().count() == 2


@pytest.mark.parametrize("kwargs, error", [
    (dict(role="admin"), BadRequest),
    (dict(role="patient"), BadRequest),
    (dict(max_uses=0), BadRequest),
    (dict(ttl_days=400), BadRequest),
    (dict(department_id=-1), BadRequest),
])
async def test_bad_invitation_requests_store_nothing(world, kwargs, error):
    with pytest.raises(error):
        await people.create_invitation(world["admin"], world["hospital"].id, **kwargs)
    assert await InvitationCode.all().count() == 0


async def test_a_department_of_another_hospital_or_an_unknown_hospital_is_refused(world):
    with pytest.raises(BadRequest):
        await people.create_invitation(world["root"], world["hospital"].id, department_id=world["foreign_dept"].id)
    with pytest.raises(NotFound):
        await people.create_invitation(world["root"], 999_999)
    assert await InvitationCode.all().count() == 0


# -- binding -----------------------------------------------------------------------------------------------------
async def test_binding_sets_hospital_department_role_and_the_token_says_so(world):
    invitation = await people.create_invitation(world["admin"], world["hospital"].id, role="engineer",
                                                department_id=world["icu"].id)
    typed = invitation.code.lower()[:4] + "-" + invitation.code.lower()[4:]  # as a person might type it
    user = await people.bind_with_code(world["nurse"], typed, name="王小红", phone="138 0013 8000")
    assert await _state(user) == (world["hospital"].id, world["icu"].id, "engineer", "王小红", "138 0013 8000")
    assert (await InvitationCode.get(id=invitation.id)).uses == 1
    entry = await AuditEntry.get(action="user.bound", entity_id=str(user.id))
    assert entry.changes["role"] == ["staff", "engineer"]
    assert entry.changes["hospital"] == [None, world["hospital"].id]
    session = read_session("k", people.session_token(Settings(secret_key="k"), user))
    assert (session.user_id, session.roles, session.hospital_id) == (user.id, ("engineer",), world["hospital"].id)


async def test_refused_codes_change_nothing(world):
    nurse = world["nurse"]
    before = await _state(nurse)
    expired = await people.create_invitation(world["admin"], world["hospital"].id)
    await _expire(expired)
    used = await people.create_invitation(world["admin"], world["hospital"].id, role="engineer")
    await InvitationCode.filter(id=used.id).update(uses=1)
    with pytest.raises(BadRequest) as err:
        await people.bind_with_code(nurse, expired.code, name="改名")
    assert err.value.code == "invitation_expired"
    with pytest.raises(Conflict) as err:
        await people.bind_with_code(nurse, used.code, name="改名")
    assert err.value.code == "invitation_used_up"
    with pytest.raises(NotFound):
        await people.bind_with_code(nurse, "ABCDEFGH", name="改名")
    with pytest.raises(BadRequest):
        await people.bind_with_code(nurse, "O0I1", name="改名")
    assert await _state(nurse) == before
    assert [i.uses for i in await InvitationCode.all().order_by("id")] == [0, 1]
    assert not await AuditEntry.filter(action="user.bound").exists()


async def test_a_user_of_another_hospital_is_refused_and_the_code_keeps_its_use(world):
    mine = await people.create_invitation(world["root"], world["hospital"].id)
    theirs = await people.create_invitation(world["root"], world["other"].id)
    await people.bind_with_code(world["nurse"], mine.code)
    with pytest.raises(Conflict) as err:
        await people.bind_with_code(world["nurse"], theirs.code)
    assert err.value.code == "already_bound"
    assert (await User.get(id=world["nurse"].id)).hospital_id == world["hospital"].id
    assert (await InvitationCode.get(id=theirs.id)).uses == 0


async def test_a_first_binding_needs_a_name(world):
    nameless = await User.create(mp_openid="oNameless")
    invitation = await people.create_invitation(world["admin"], world["hospital"].id)
    with pytest.raises(BadRequest):
        await people.bind_with_code(nameless, invitation.code)
    with pytest.raises(BadRequest):
        await people.bind_with_code(nameless, invitation.code, name="李四", phone="call me")
    assert (await InvitationCode.get(id=invitation.id)).uses == 0
    assert (await people.bind_with_code(nameless, invitation.code, name=" 李四 ")).name == "李四"


async def test_simultaneous_uses_of_a_single_use_code_let_exactly_one_in(world):
    invitation = await people.create_invitation(world["admin"], world["hospital"].id)
    users = [await User.create(name=f"员工{i}", mp_openid=f"oRace{i}") for i in range(6)]
    results = await asyncio.gather(*(people.bind_with_code(u, invitation.code) for u in users),
                                   return_exceptions=True)
    assert sum(isinstance(r, User) for r in results) == 1
    assert all(isinstance(r, (User, Conflict)) for r in results), results
    assert await User.filter(hospital_id=world["hospital"].id, mp_openid__startswith="oRace").count() == 1
    assert (await InvitationCode.get(id=invitation.id)).uses == 1


async def test_a_multi_use_code_serves_its_count_then_stops(world):
    invitation = await people.create_invitation(world["admin"], world["hospital"].id, max_uses=2)
    users = [await User.create(name=f"员工{i}", mp_openid=f"oMulti{i}") for i in range(3)]
    results = await asyncio.gather(*(people.bind_with_code(u, invitation.code) for u in users),
                                   return_exceptions=True)
    assert sum(isinstance(r, User) for r in results) == 2
    assert (await InvitationCode.get(id=invitation.id)).uses == 2
