"""The console's administration over real HTTP on both databases: hospitals, departments, console accounts,
invitation codes, the knowledge base's review queue and proposals, device import. Agents and engineers are refused;
bad input names its field and stores nothing; every change leaves an audit entry."""

from __future__ import annotations

import aiohttp
import pytest

from core.models import AuditEntry, Department, Hospital, InvitationCode, User
from knowledge import learning
from knowledge.models import KBEntry, KBProposal, QuestionLog
from repair.models import Device
from tests.console_support import console_login, make_console_user

ADMIN = "/console/api/v1/admin"
IMPORT_HEADER = "系统编号,铭牌号,名称,型号,类型,科室"


@pytest.fixture
async def console(serve, settings_for, database_url):
    live = await serve(settings_for(database_url))
    first = await Hospital.create(name="市第一人民医院")
    second = await Hospital.create(name="市中心医院")
    admin_user = await make_console_user("admin", "admin", "admin-password-1", name="管理员")
    agent_user = await make_console_user("agent", "agent1", "agent-password-1", [first], name="李客服")
    await make_console_user("engineer", "eng1", "engineer-password", [first], name="张工")
    admin = await console_login(live, "admin", "admin-password-1")
    return dict(live=live, first=first, second=second, admin=admin, admin_user=admin_user, agent_user=agent_user)


def _error(body) -> tuple:
    error = body["error"]
    return error["code"], (error.get("details") or {}).get("field")


async def test_agents_and_engineers_are_refused_and_nothing_changes(console):
    live = console["live"]
    for username, password in (("agent1", "agent-password-1"), ("eng1", "engineer-password")):
        client = await console_login(live, username, password)
        for method, path, body in (("GET", "/hospitals", None), ("POST", "/hospitals", {"name": "新医院"}),
                                   ("POST", "/users", {"username": "x" + username, "password": "p" * 12,
                                                       "role": "admin"}),
                                   ("PUT", f"/users/{client.user['id']}", {"role": "admin"}),
                                   ("GET", "/kb/review", None), ("POST", "/invitations", {"hospital_id": 1})):
            status, answer = await client.request(method, ADMIN + path, json=body)
            assert status == 403, (username, method, path)
            assert answer["error"] == {"code": "role", "message": "只有管理员可以进行此操作"}
    assert await Hospital.filter(name="新医院").count() == 0
    assert await User.filter(role="admin").count() == 1 and await InvitationCode.all().count() == 0
    status, _, _ = await live.request("GET", ADMIN + "/hospitals")
    assert status == 401


async def test_hospitals_and_departments(console):
    admin, first = console["admin"], console["first"]
    status, created = await admin.post(ADMIN + "/hospitals", {"name": " 市妇幼保健院 ", "aliases": "妇幼",
                                                              "latitude": 30.25, "longitude": 120.16})
    assert status == 201 and created["name"] == "市妇幼保健院"
    stored = await Hospital.get(id=created["id"])
    assert (stored.aliases, stored.latitude) == ("妇幼", 30.25)
    audit = await AuditEntry.get(action="hospital.created", entity_id=str(stored.id))
    assert audit.actor_id == console["admin_user"].id

    status, body = await admin.post(ADMIN + "/hospitals", {"name": "市第一人民医院"})
    assert status == 409 and _error(body) == ("hospital_exists", "name")
    status, body = await admin.post(ADMIN + "/hospitals", {"name": "某医院", "latitude": 123})
    assert status == 400 and "latitude" in body["error"]["message"]
    status, body = await admin.post(ADMIN + "/hospitals", {"aliases": "无名"})
    assert status == 400 and "name" in body["error"]["message"]
    assert await Hospital.all().count() == 3

    status, changed = await admin.put(f"{ADMIN}/hospitals/{first.id}", {"address": "解放路 1 号"})
    assert status == 200 and (changed["name"], changed["address"]) == ("市第一人民医院", "解放路 1 号")
    assert (await Hospital.get(id=first.id)).address == "解放路 1 号"
    assert (await AuditEntry.get(action="hospital.updated")).changes == {"address": ["", "解放路 1 号"]}
    status, body = await admin.put(f"{ADMIN}/hospitals/{first.id}", {"name": "市中心医院"})
    assert status == 409 and _error(body) == ("hospital_exists", "name")
    status, body = await admin.put(f"{ADMIN}/hospitals/99999", {"address": "x"})
    assert status == 404 and body["error"]["code"] == "hospital_not_found"

    status, dep = await admin.post(f"{ADMIN}/hospitals/{first.id}/departments", {"name": "检验科"})
    assert status == 201 and await Department.filter(hospital=first, name="检验科").exists()
    status, body = await admin.post(f"{ADMIN}/hospitals/{first.id}/departments", {"name": "检验科"})
    assert status == 409 and _error(body) == ("department_exists", "name")
    status, listed = await admin.get(f"{ADMIN}/hospitals/{first.id}/departments")
    assert status == 200 and [d["name"] for d in listed["items"]] == ["检验科"]
    status, listed = await admin.get(ADMIN + "/hospitals")
    assert [h["name"] for h in listed["items"]] == ["市第一人民医院", "市中心医院", "市妇幼保健院"]


async def test_console_accounts(console):
    live, admin, first, second = console["live"], console["admin"], console["first"], console["second"]
    status, made = await admin.post(ADMIN + "/users", {"username": "wangfang", "password": "long-enough-1",
                                                       "role": "agent", "name": "王芳",
                                                       "hospital_ids": [first.id, second.id]})
    assert status == 201 and [h["name"] for h in made["hospitals"]] == ["市第一人民医院", "市中心医院"]
    assert (await AuditEntry.get(action="user.created", entity_id=str(made["id"]))).changes["role"] == "agent"
    agent = await console_login(live, "wangfang", "long-enough-1")
    status, me = await agent.get("/console/api/v1/me")
    assert [h["id"] for h in me["user"]["hospitals"]] == [first.id, second.id]

    for body, expected in (
        ({"username": "weak", "password": "short", "role": "agent"}, (400, "weak_password", "password")),
        ({"username": "wangfang", "password": "long-enough-2", "role": "agent"}, (409, "username_taken", "username")),
        ({"username": "nohosp", "password": "long-enough-3", "role": "agent", "hospital_ids": [99999]},
         (404, "hospital_not_found", "hospital_ids")),
        ({"username": "boss", "password": "long-enough-4", "role": "owner"}, (400, "invalid_field", "role")),
        ({"username": "a b", "password": "long-enough-5", "role": "agent"}, (400, "invalid_field", "username")),
    ):
        status, answer = await admin.post(ADMIN + "/users", body)
        assert (status, *_error(answer)) == expected, body
    assert not await User.filter(username__in=["weak", "nohosp", "boss", "a b"]).exists()
    assert await User.filter(username="wangfang").count() == 1

    # Serve one hospital only: the agent's view narrows at once.
    status, changed = await admin.put(f"{ADMIN}/users/{made['id']}", {"hospital_ids": [second.id]})
    assert status == 200 and [h["id"] for h in changed["hospitals"]] == [second.id]
    status, me = await agent.get("/console/api/v1/me")
    assert [h["id"] for h in me["user"]["hospitals"]] == [second.id]
    # A weak new password is refused and the old one still works.
    status, answer = await admin.put(f"{ADMIN}/users/{made['id']}", {"password": "123"})
    assert (status, *_error(answer)) == (400, "weak_password", "password")
    await console_login(live, "wangfang", "long-enough-1")
    # A reset ends the agent's sessions; the new password signs in.
    status, _ = await admin.put(f"{ADMIN}/users/{made['id']}", {"password": "brand-new-pass"})
    assert status == 200
    status, answer = await agent.get("/console/api/v1/me")
    assert status == 401
    agent = await console_login(live, "wangfang", "brand-new-pass")
    # Disabled: signed out at once, and cannot sign in.
    status, changed = await admin.put(f"{ADMIN}/users/{made['id']}", {"active": False})
    assert status == 200 and changed["active"] is False
    status, _ = await agent.get("/console/api/v1/me")
    assert status == 401
    status, _, _ = await live.request("POST", "/console/api/v1/login",
                                      json={"username": "wangfang", "password": "brand-new-pass"})
    assert status == 403
    updates = await AuditEntry.filter(action="user.updated", entity_id=str(made["id"])).order_by("id")
    assert [sorted(e.changes) for e in updates] == [["hospitals"], ["password"], ["active"]]

    # An administrator cannot lock themselves out.
    me_id = console["admin_user"].id
    for body in ({"active": False}, {"role": "agent"}):
        status, answer = await admin.put(f"{ADMIN}/users/{me_id}", body)
        assert status == 403 and answer["error"]["code"] == "own_account"
    assert (await User.get(id=me_id)).role == "admin"
    status, listed = await admin.get(ADMIN + "/users", params={"role": "agent"})
    assert [u["username"] for u in listed["items"]] == ["agent1", "wangfang"]
    status, answer = await admin.get(ADMIN + "/users", params={"role": "king"})
    assert status == 400 and _error(answer)[1] == "role"


async def test_invitation_codes(console):
    admin, first = console["admin"], console["first"]
    status, made = await admin.post(ADMIN + "/invitations", {"hospital_id": first.id, "role": "engineer",
                                                             "max_uses": 3})
    assert status == 201 and len(made["code"]) == 8 and made["hospital"] == "市第一人民医院"
    stored = await InvitationCode.get(code=made["code"])
    assert (stored.role, stored.max_uses, stored.created_by_id) == ("engineer", 3, console["admin_user"].id)
    assert await AuditEntry.filter(action="invitation.created", entity_id=made["code"]).exists()
    status, listed = await admin.get(ADMIN + "/invitations")
    assert status == 200 and [i["code"] for i in listed["items"]] == [made["code"]]
    status, listed = await admin.get(ADMIN + "/invitations", params={"hospital_id": console["second"].id})
    assert listed["items"] == []
    status, answer = await admin.post(ADMIN + "/invitations", {"hospital_id": 99999})
    assert status == 404
    status, answer = await admin.post(ADMIN + "/invitations", {"hospital_id": first.id, "role": "admin"})
    assert status == 400 and "role" in answer["error"]["message"]


async def test_knowledge_review_and_proposals(console):
    admin, agent_user = console["admin"], console["agent_user"]
    await KBEntry.create(id="vent-alarm", device_type="ventilator", question="呼吸机报警怎么办", answer="检查管路")
    unhelpful = await QuestionLog.create(openid="oNurse", text="呼吸机一直响", kind="answer", entry_id="vent-alarm",
                                         confidence=0.6, feedback="unhelpful")
    await QuestionLog.create(openid="oNurse", text="呼吸机报警", kind="answer", entry_id="vent-alarm",
                             confidence=0.9, feedback="helpful")
    status, queue = await admin.get(ADMIN + "/kb/review")
    assert status == 200 and [q["text"] for q in queue["items"]] == ["呼吸机一直响"]
    status, _ = await admin.post(f"{ADMIN}/kb/review/{unhelpful.id}/done")
    assert status == 200
    status, queue = await admin.get(ADMIN + "/kb/review")
    assert queue["items"] == []
    assert await AuditEntry.filter(action="kb.question_reviewed", entity_id=str(unhelpful.id)).exists()

    proposal = await learning.save_reply(agent_user, question="监护仪黑屏", kind="entry", entry_id="monitor-black",
                                         answer="检查电源线", device_type="monitor")
    status, listed = await admin.get(ADMIN + "/kb/proposals", params={"status": "pending"})
    assert status == 200 and [(p["entry_id"], p["proposed_by"]) for p in listed["items"]] == [
        ("monitor-black", "李客服")]
    status, decided = await admin.post(f"{ADMIN}/kb/proposals/{proposal.id}/decide", {"approve": True})
    assert status == 200 and decided["status"] == "approved"
    assert (await KBEntry.get(id="monitor-black")).active is True
    status, answer = await admin.post(f"{ADMIN}/kb/proposals/{proposal.id}/decide", {"approve": False})
    assert status == 409 and (await KBProposal.get(id=proposal.id)).status == "approved"
    status, answer = await admin.post(f"{ADMIN}/kb/proposals/{proposal.id}/decide", {"approve": "yes"})
    assert status == 400 and "approve" in answer["error"]["message"]


def _import_form(text: str | None, **fields) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, str(value))
    if text is not None:
        form.add_field("file", text.encode("utf-8-sig"), filename="设备.csv", content_type="text/csv")
    return form


async def test_device_import(console):
    admin, first = console["admin"], console["first"]
    good = "\r\n".join([IMPORT_HEADER, "A0001,SN-778,呼吸机,V60,呼吸机,重症医学科",
                        "A0002,SN-779,离心机,C1,centrifuge,检验科"])
    status, report = await admin.post(ADMIN + "/devices/import", data=_import_form(good, hospital_id=first.id,
                                                                                    dry_run="1"))
    assert status == 200 and (report["dry_run"], report["stored"], report["created"]) == (True, False, 2)
    assert await Device.all().count() == 0
    status, report = await admin.post(ADMIN + "/devices/import", data=_import_form(good, hospital_id=first.id))
    assert status == 200 and report["stored"] and report["created"] == 2
    assert sorted(await Device.filter(hospital=first).values_list("system_number", flat=True)) == ["A0001", "A0002"]
    assert (await AuditEntry.get(action="devices.imported")).actor_id == console["admin_user"].id

    bad = "\r\n".join([IMPORT_HEADER, "A0003,SN-780,监护仪,M1,monitor,急诊科", "A0003,SN-781,监护仪,M1,monitor,急诊科"])
    status, answer = await admin.post(ADMIN + "/devices/import", data=_import_form(bad, hospital_id=first.id))
    assert status == 422 and answer["error"]["code"] == "import_refused"
    rows = answer["error"]["details"]["report"]["rows"]
    assert [r["row"] for r in rows if r["errors"]] == [3]
    assert not await Device.filter(system_number="A0003").exists()
    status, answer = await admin.post(ADMIN + "/devices/import", data=_import_form(good))
    assert status == 400 and _error(answer)[1] == "hospital_id"
    status, answer = await admin.post(ADMIN + "/devices/import", data=_import_form(None, hospital_id=first.id))
    assert status == 400 and _error(answer)[1] == "file"
    status, answer = await admin.post(ADMIN + "/devices/import", data=_import_form(good, hospital_id=99999))
    assert status == 404 and answer["error"]["code"] == "hospital_not_found"
