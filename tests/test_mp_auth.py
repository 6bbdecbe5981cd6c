"""The mini program's sign-in and binding over HTTP, and the H5 pages' WeChat OAuth round trip, against the WeChat
stand-in, on both databases."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta, timezone
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import pytest
from itsdangerous import TimestampSigner

from core.auth import issue_session, read_session, sign_link
from core.models import Department, Hospital, InvitationCode, User
from miniprogram_api import h5_auth
from tests.wechat_standin import WeChatStandIn

APP_ID, APP_SECRET = "wx_mp_test_service", "service-secret"
MP_APP_ID, MP_APP_SECRET = "wx_mp_test_mini", "mini-secret"
PUBLIC = "https://medwx.example"  # what phones reach; the test talks to the server behind it directly
SECRET = "test-secret"


@pytest.fixture
async def standin():
    server = WeChatStandIn(app_id=APP_ID, app_secret=APP_SECRET, mp_app_id=MP_APP_ID, mp_app_secret=MP_APP_SECRET,
                           oauth_demo_openid="oH5Demo")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def live(serve, settings_for, database_url, standin):
    return await serve(settings_for(
        database_url, wechat_app_id=APP_ID, wechat_app_secret=APP_SECRET, wechat_mp_app_id=MP_APP_ID,
        wechat_mp_app_secret=MP_APP_SECRET, wechat_api_base=standin.base_url, wechat_open_base=standin.base_url,
        public_base_url=PUBLIC))


@pytest.fixture
async def hospital(live):
    hospital = await Hospital.create(name="市第一人民医院")
    await Department.create(hospital=hospital, name="设备科")
    return hospital


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def call(live, method: str, path: str, **kwargs) -> tuple[int, dict]:
    status, _, body = await live.request(method, path, **kwargs)
    return status, json.loads(body)


async def login(live, standin, openid: str, code: str | None = None) -> dict:
    code = code or f"code-{openid}-{len(standin.calls)}"
    standin.add_js_code(code, openid)
    status, body = await call(live, "POST", "/mp/v1/auth/login", json={"code": code})
    assert status == 200, body
    return body


async def admin_token(hospital, username: str = "admin") -> str:
    admin = await User.create(name=f"管理员{username}", role="admin", hospital=hospital, username=username)
    return issue_session(SECRET, user_id=admin.id, openid="", roles=["admin"], hospital_id=hospital.id)


async def new_code(live, token: str, **body) -> str:
    status, answer = await call(live, "POST", "/mp/v1/admin/invitations", json=body, headers=bearer(token))
    assert status == 201, answer
    return answer["code"]


# -- login --------------------------------------------------------------------------------------------------------
async def test_login_creates_the_user_once(live, standin):
    first = await login(live, standin, "oMpNurse")
    assert first["user"]["role"] == "staff" and first["user"]["bound"] is False and first["user"]["hospital"] is None
    second = await login(live, standin, "oMpNurse")
    assert second["user"]["id"] == first["user"]["id"]
    assert await User.filter(mp_openid="oMpNurse").count() == 1
    assert "session_key" not in json.dumps(first)
    session = read_session(SECRET, second["token"])
    assert (session.user_id, session.roles, session.hospital_id) == (first["user"]["id"], ("staff",), None)


async def test_a_reused_code_is_a_400_in_chinese(live, standin):
    await login(live, standin, "oMpOnce", code="one-time")
    status, body = await call(live, "POST", "/mp/v1/auth/login", json={"code": "one-time"})
    assert status == 400
    assert body["error"]["message"] == "登录凭证无效或已使用，请重新进入"
    assert await User.all().count() == 1


async def test_wechat_rate_limit_is_a_429(live, standin):
    standin.add_js_code("busy", "oMpBusy")
    standin.fail_next("/sns/jscode2session", 45011)
    status, body = await call(live, "POST", "/mp/v1/auth/login", json={"code": "busy"})
    assert status == 429 and body["error"]["message"] == "请求太频繁，请稍后再试"
    assert not await User.exists(mp_openid="oMpBusy")


@pytest.mark.parametrize("payload", [{}, {"code": ""}, {"code": 42}, "not json"])
async def test_a_login_without_a_usable_code_is_a_400(live, standin, payload):
    kwargs = {"data": payload} if isinstance(payload, str) else {"json": payload}
    status, body = await call(live, "POST", "/mp/v1/auth/login", **kwargs)
    assert status == 400 and body["error"]["message"]
    assert not standin.calls_to("/sns/jscode2session")


# -- binding -------------------------------------------------------------------------------------------------------
async def test_binding_changes_role_hospital_and_the_token(live, standin, hospital):
    code = await new_code(live, await admin_token(hospital), role="engineer")
    signed_in = await login(live, standin, "oMpEngineer")
    status, body = await call(live, "POST", "/mp/v1/auth/bind", headers=bearer(signed_in["token"]),
                              json={"code": code, "name": "张工", "phone": "13800138000"})
    assert status == 200, body
    assert body["user"]["role"] == "engineer" and body["user"]["bound"] is True
    assert body["user"]["hospital"] == {"id": hospital.id, "name": "市第一人民医院"}
    session = read_session(SECRET, body["token"])
    assert (session.roles, session.hospital_id) == (("engineer",), hospital.id)
    stored = await User.get(mp_openid="oMpEngineer")
    assert (stored.name, stored.phone, stored.hospital_id, stored.role) == ("张工", "13800138000", hospital.id,
                                                                             "engineer")
    status, me = await call(live, "GET", "/mp/v1/me", headers=bearer(body["token"]))
    assert status == 200 and me["hospital"]["name"] == "市第一人民医院"


async def test_expired_used_up_and_unknown_codes_change_nothing(live, standin, hospital):
    token = await admin_token(hospital)
    expired, used = await new_code(live, token), await new_code(live, token)
    await InvitationCode.filter(code=expired).update(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    first = await login(live, standin, "oMpFirst")
    status, _ = await call(live, "POST", "/mp/v1/auth/bind", headers=bearer(first["token"]),
                           json={"code": used, "name": "先来的"})
    assert status == 200
    late = await login(live, standin, "oMpLate")
    for code, expected in ((expired, 400), (used, 409), ("ZZZZZZZZ", 404), ("not-a-code!", 400)):
        status, body = await call(live, "POST", "/mp/v1/auth/bind", headers=bearer(late["token"]),
                                  json={"code": code, "name": "后来的"})
        assert status == expected, (code, body)
        assert "邀请码" in body["error"]["message"]
    stored = await User.get(mp_openid="oMpLate")
    assert (stored.hospital_id, stored.role, stored.name) == (None, "staff", "")
    assert {i.code: i.uses for i in await InvitationCode.all()} == {expired: 0, used: 1}


async def test_two_simultaneous_binds_of_a_single_use_code_one_wins(live, standin, hospital):
    code = await new_code(live, await admin_token(hospital))
    a, b = await login(live, standin, "oMpA"), await login(live, standin, "oMpB")
    answers = await asyncio.gather(*(call(live, "POST", "/mp/v1/auth/bind", headers=bearer(x["token"]),
                                          json={"code": code, "name": name}) for x, name in ((a, "甲"), (b, "乙"))))
    assert sorted(status for status, _ in answers) == [200, 409]
    assert await User.filter(hospital_id=hospital.id, role="staff").count() == 1
    assert (await InvitationCode.get(code=code)).uses == 1


async def test_binding_needs_a_session(live, hospital):
    code = await new_code(live, await admin_token(hospital))
    status, body = await call(live, "POST", "/mp/v1/auth/bind", json={"code": code, "name": "无名"})
    assert status == 401 and body["error"]["message"] == "请先登录"
    assert (await InvitationCode.get(code=code)).uses == 0


# -- invitations ---------------------------------------------------------------------------------------------------
async def test_only_an_admin_creates_invitations(live, standin, hospital):
    staff = await login(live, standin, "oMpStaff")
    status, body = await call(live, "POST", "/mp/v1/admin/invitations", headers=bearer(staff["token"]),
                              json={"hospital_id": hospital.id, "role": "engineer"})
    assert status == 403 and body["error"]["message"] == "只有管理员可以进行此操作"
    # A forged role claim does not help: the stored role decides.
    forged = issue_session(SECRET, user_id=staff["user"]["id"], openid="", roles=["admin"], hospital_id=hospital.id)
    status, _ = await call(live, "POST", "/mp/v1/admin/invitations", headers=bearer(forged), json={})
    assert status == 403
    assert await InvitationCode.all().count() == 0
    status, made = await call(live, "POST", "/mp/v1/admin/invitations", headers=bearer(await admin_token(hospital)),
                              json={"role": "agent", "max_uses": 5})
    assert status == 201 and made["hospital_id"] == hospital.id and made["max_uses"] == 5
    assert len(made["code"]) == 8 and not set(made["code"]) & set("0O1I")
    status, body = await call(live, "POST", "/mp/v1/admin/invitations",
                              headers=bearer(await admin_token(hospital, "admin2")), json={"role": "admin"})
    assert status == 400 and body["error"]["message"].startswith("字段 role")


# -- who am I ------------------------------------------------------------------------------------------------------
async def test_me_refuses_missing_bad_and_expired_tokens(live, standin):
    user = (await login(live, standin, "oMpMe"))["user"]
    expired = issue_session(SECRET, user_id=user["id"], openid="", roles=["staff"], ttl=-60)
    foreign = issue_session("another-secret", user_id=user["id"], openid="", roles=["staff"])
    for headers, code in (({}, "login_required"), (bearer("garbage"), "invalid_session"),
                          (bearer(foreign), "invalid_session"), (bearer(expired), "session_expired"),
                          ({"Authorization": "Basic abc"}, "login_required")):
        status, body = await call(live, "GET", "/mp/v1/me", headers=headers)
        assert (status, body["error"]["code"]) == (401, code)
        assert body["error"]["message"]


async def test_a_deactivated_user_is_refused(live, standin):
    signed_in = await login(live, standin, "oMpGone")
    await User.filter(mp_openid="oMpGone").update(active=False)
    status, body = await call(live, "GET", "/mp/v1/me", headers=bearer(signed_in["token"]))
    assert status == 403 and body["error"]["message"] == "账号已停用，请联系管理员"


# -- H5 OAuth ------------------------------------------------------------------------------------------------------
def cookies_of(headers) -> SimpleCookie:
    jar = SimpleCookie()
    for value in headers.getall("Set-Cookie", []):
        jar.load(value)
    return jar


async def start_oauth(live, next_path: str) -> tuple[str, str]:
    """``/h5/auth/start``: WeChat's authorize URL and the pending cookie."""
    status, headers, _ = await live.request("GET", "/h5/auth/start", params={"next": next_path},
                                            allow_redirects=False)
    assert status == 302
    pending = cookies_of(headers)[h5_auth.PENDING_COOKIE]
    assert pending["httponly"] and pending["path"] == "/h5/auth"
    return headers["Location"], pending.value


async def test_the_h5_round_trip_through_the_standin(live, standin):
    authorize, pending = await start_oauth(live, "/mp/v1/me?from=h5")
    parts = urlsplit(authorize)
    assert authorize.startswith(standin.base_url + "/connect/oauth2/authorize?")
    assert parts.fragment == "wechat_redirect"
    query = parse_qs(parts.query)
    assert query["appid"] == [APP_ID] and query["scope"] == ["snsapi_base"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == [PUBLIC + "/h5/auth/callback"]
    assert len(query["state"][0]) <= 128 and query["state"][0].isalnum()

    async with live.http.get(authorize, allow_redirects=False) as answer:  # the phone on WeChat's page
        assert answer.status == 302
        back = answer.headers["Location"]
    assert back.startswith(PUBLIC + "/h5/auth/callback?")
    callback = back[len(PUBLIC):]  # the proxy in front of medwx passes the path on
    status, headers, _ = await live.request("GET", callback, allow_redirects=False,
                                            headers={"Cookie": f"{h5_auth.PENDING_COOKIE}={pending}"})
    assert status == 302 and headers["Location"] == "/mp/v1/me?from=h5"
    jar = cookies_of(headers)
    session_cookie = jar["medwx_h5"]
    assert session_cookie["httponly"] and session_cookie["samesite"] == "Lax" and session_cookie["path"] == "/"
    assert session_cookie["secure"]  # PUBLIC is https
    assert jar[h5_auth.PENDING_COOKIE]["max-age"] == "0"

    status, me = await call(live, "GET", headers["Location"], headers={"Cookie": f"medwx_h5={session_cookie.value}"})
    assert status == 200 and me["role"] == "staff" and me["bound"] is False
    assert (await User.get(openid="oH5Demo")).id == me["id"]


@pytest.mark.parametrize("next_path", ["https://evil.example/h5/x", "//evil.example/h5", "/\\evil.example",
                                       "/%2F%2Fevil.example", "javascript:alert(1)", "h5/repair", "/\tx", ""])
async def test_a_foreign_next_is_refused(live, standin, next_path):
    status, headers, body = await live.request("GET", "/h5/auth/start", params={"next": next_path},
                                               allow_redirects=False)
    assert status == 400 and "Location" not in headers
    assert json.loads(body)["error"]["message"]
    assert not standin.calls


async def _callback(live, standin, pending: str, state: str) -> tuple[int, dict]:
    standin.add_oauth_code("web-code", "oH5Victim")
    return await call(live, "GET", "/h5/auth/callback", params={"code": "web-code", "state": state},
                      allow_redirects=False, headers={"Cookie": f"{h5_auth.PENDING_COOKIE}={pending}"})


async def test_forged_state_is_a_403(live, standin):
    authorize, pending = await start_oauth(live, "/h5/repair")
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    status, body = await _callback(live, standin, pending, "A" * 32)  # someone else's state
    assert status == 403 and body["error"]["code"] == "oauth_state_invalid"
    status, body = await _callback(live, standin, pending[:-3] + "xyz", state)  # a tampered cookie
    assert status == 403 and body["error"]["code"] == "oauth_state_invalid"
    status, body = await call(live, "GET", "/h5/auth/callback", params={"code": "c", "state": state},
                              allow_redirects=False)  # no cookie: a link opened in another browser
    assert status == 403
    assert not await User.exists(openid="oH5Victim")


async def test_an_expired_state_is_a_403(live, standin, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(TimestampSigner, "get_timestamp", lambda self: int(datetime.now().timestamp()) - 3600)
        old = sign_link(SECRET, h5_auth._PURPOSE, {"next": "/h5/repair", "nonce": "abc123"})
    status, body = await _callback(live, standin, old, "abc123")
    assert status == 403 and body["error"]["code"] == "oauth_state_expired"
    assert body["error"]["message"] == "登录已超时，请重新打开页面"
    assert not await User.exists(openid="oH5Victim")


async def test_the_api_is_documented(live):
    status, spec = await call(live, "GET", "/docs/openapi.json")
    assert status == 200
    login_doc = spec["paths"]["/mp/v1/auth/login"]["post"]
    assert login_doc["summary"] and login_doc["requestBody"]["description"]
    assert {"/mp/v1/auth/bind", "/mp/v1/me", "/mp/v1/admin/invitations", "/h5/auth/start",
            "/h5/auth/callback"} <= set(spec["paths"])
    refs = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(spec)))
    assert "#/components/schemas/SessionOut" in refs
    for ref in refs:  # every schema a route names is in the document (Swagger UI shows no resolver errors)
        assert ref.removeprefix("#/components/schemas/") in spec["components"]["schemas"], ref


async def test_a_bound_member_of_staff_joins_the_hospitals_service_group(live, standin, hospital):
    import asyncio

    from repair.service_groups import members_of

    code = await new_code(live, await admin_token(hospital))
    signed_in = await login(live, standin, "oMpNurse")
    status, _ = await call(live, "POST", "/mp/v1/auth/bind", headers=bearer(signed_in["token"]),
                           json={"code": code, "name": "王护士"})
    assert status == 200
    names = []
    for _ in range(60):  # the listener runs in the background, right after the bind answered
        names = [(m.user.name, m.role) for m in await members_of(hospital.id)]
        if ("王护士", "staff") in names:
            break
        await asyncio.sleep(0.05)
    assert ("王护士", "staff") in names
