"""Doctors' console accounts on both databases: an administrator makes a console account a practitioner (the admin
API: create with ``practitioner_id``, change the role, search practitioners) and an operator does the same from the
command line (``python -m care link-doctor | unlink-doctor | list-doctors``, run as a separate process like a person
would). A refused link changes nothing; a doctor who stops being one sees no consultations."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from care.consultation_models import DoctorAccount
from care.models import Practitioner
from core.models import AuditEntry, User
from tests.console_support import console_login, make_console_user, signed_in_page, unexpected_problems

PROJECT = Path(__file__).resolve().parent.parent
ADMIN = "/console/api/v1/admin"
DOCTOR_API = "/console/api/v1/doctor/consultations"
PASSWORD = "doctor-password-1"


def _error(body) -> tuple:
    error = body["error"]
    return error["code"], (error.get("details") or {}).get("field")


async def _practitioners() -> dict:
    return dict(
        li=await Practitioner.create(his_id="pr-li", name="李医生", department="心内科"),
        zhou=await Practitioner.create(his_id="pr-zhou", name="周医生", department="内分泌科"),
        retired=await Practitioner.create(his_id="pr-old", name="吴医生", department="心内科", active=False),
    )


@pytest.fixture
async def console(serve, settings_for, database_url):
    live = await serve(settings_for(database_url))
    await make_console_user("admin", "admin", "admin-password-1", name="管理员")
    admin_user = await User.get(username="admin")
    return dict(live=live, admin=await console_login(live, "admin", "admin-password-1"), admin_user=admin_user,
                **await _practitioners())


# -- the admin API ----------------------------------------------------------------------------------------------------
async def test_an_administrator_creates_a_doctor_who_then_sees_their_practitioner(console):
    live, admin, li = console["live"], console["admin"], console["li"]
    status, made = await admin.post(ADMIN + "/users", {"username": "dr.li", "password": PASSWORD, "role": "doctor",
                                                       "name": "李医生", "practitioner_id": li.id})
    assert status == 201, made
    assert made["role"] == "doctor"
    assert made["practitioner"] == {"id": li.id, "his_id": "pr-li", "name": "李医生", "department": "心内科",
                                    "active": True}
    created = await AuditEntry.get(action="user.created", entity_id=str(made["id"]))
    assert created.changes["practitioner_id"] == li.id and created.actor_id == console["admin_user"].id
    assert (await AuditEntry.get(action="doctor.linked", entity_id=str(made["id"]))).actor_id == created.actor_id

    doctor = await console_login(live, "dr.li", PASSWORD)
    status, mine = await doctor.get(DOCTOR_API)
    assert status == 200
    assert mine["practitioner"] == {"id": li.id, "name": "李医生", "department": "心内科"}
    assert mine["consultations"] == []

    status, listed = await admin.get(ADMIN + "/users?role=doctor")
    assert status == 200 and [(u["username"], u["practitioner"]["id"]) for u in listed["items"]] == [("dr.li", li.id)]
    status, everyone = await admin.get(ADMIN + "/users")
    assert {u["username"]: u["practitioner"] for u in everyone["items"]}["admin"] is None


async def test_a_refused_practitioner_creates_no_account(console):
    admin, li, retired = console["admin"], console["li"], console["retired"]
    await make_console_user("doctor", "dr.first", PASSWORD)
    status, _ = await admin.put(f"{ADMIN}/users/{(await User.get(username='dr.first')).id}", {"practitioner_id": li.id})
    assert status == 200

    base = {"password": PASSWORD, "role": "doctor"}
    for body, expected in (
        ({"username": "dr.none", **base}, (400, "practitioner_required")),
        ({"username": "dr.ghost", **base, "practitioner_id": 99999}, (404, "practitioner_not_found")),
        ({"username": "dr.wu", **base, "practitioner_id": retired.id}, (409, "practitioner_inactive")),
        ({"username": "dr.twin", **base, "practitioner_id": li.id}, (409, "practitioner_linked")),
        ({"username": "kefu", **base, "role": "agent", "practitioner_id": li.id}, (400, "invalid_field")),
    ):
        status, answer = await admin.post(ADMIN + "/users", body)
        assert (status, *_error(answer)) == (*expected, "practitioner_id"), body
        if expected[1] == "practitioner_linked":
            assert "dr.first" in answer["error"]["message"]  # the account that has the practitioner is named
    status, answer = await admin.post(ADMIN + "/users", {"username": "dr.text", **base, "practitioner_id": "李医生"})
    assert status == 400 and "practitioner_id" in answer["error"]["message"]
    assert _error(answer) == ("invalid_field", "practitioner_id")  # the form can mark the field
    assert not await User.filter(username__in=["dr.none", "dr.ghost", "dr.wu", "dr.twin", "kefu", "dr.text"]).exists()
    assert await DoctorAccount.all().count() == 1
    assert await AuditEntry.filter(action="user.created").count() == 0


async def test_a_doctor_made_an_agent_loses_the_link_and_the_consultations(console):
    live, admin, li, zhou = console["live"], console["admin"], console["li"], console["zhou"]
    _, made = await admin.post(ADMIN + "/users", {"username": "dr.li", "password": PASSWORD, "role": "doctor",
                                                  "practitioner_id": li.id})
    user_id = made["id"]
    doctor = await console_login(live, "dr.li", PASSWORD)

    # Another practitioner: relinked, and the open session ends (the person is someone else's doctor now).
    status, changed = await admin.put(f"{ADMIN}/users/{user_id}", {"practitioner_id": zhou.id})
    assert status == 200 and changed["practitioner"]["id"] == zhou.id
    status, body = await doctor.get(DOCTOR_API)
    assert status == 401 and body["error"]["code"] == "login_required"
    doctor = await console_login(live, "dr.li", PASSWORD)
    status, mine = await doctor.get(DOCTOR_API)
    assert status == 200 and mine["practitioner"]["name"] == "周医生"

    status, changed = await admin.put(f"{ADMIN}/users/{user_id}", {"role": "agent"})
    assert status == 200 and (changed["role"], changed["practitioner"]) == ("agent", None)
    assert not await DoctorAccount.filter(user_id=user_id).exists()
    assert (await AuditEntry.get(action="doctor.unlinked", entity_id=str(user_id))).changes == {
        "practitioner_id": zhou.id}
    assert (await AuditEntry.filter(action="user.updated", entity_id=str(user_id)).order_by("-id").first()).changes \
        == {"role": ["doctor", "agent"], "practitioner_id": [zhou.id, None]}
    status, _ = await doctor.get(DOCTOR_API)
    assert status == 401  # a new role: signed out
    agent = await console_login(live, "dr.li", PASSWORD)
    status, body = await agent.get(DOCTOR_API)
    assert status == 403 and body["error"]["code"] == "role"

    # Back to doctor: a practitioner is needed, and a refused one leaves the account as it was.
    for change, expected in (({"role": "doctor"}, (400, "practitioner_required", "practitioner_id")),
                             ({"role": "doctor", "practitioner_id": console["retired"].id},
                              (409, "practitioner_inactive", "practitioner_id")),
                             ({"practitioner_id": li.id}, (400, "invalid_field", "practitioner_id"))):
        status, answer = await admin.put(f"{ADMIN}/users/{user_id}", change)
        assert (status, *_error(answer)) == expected, change
        assert (await User.get(id=user_id)).role == "agent" and not await DoctorAccount.filter(user_id=user_id).exists()
    status, changed = await admin.put(f"{ADMIN}/users/{user_id}", {"role": "doctor", "practitioner_id": li.id})
    assert status == 200 and (changed["role"], changed["practitioner"]["id"]) == ("doctor", li.id)


async def test_the_practitioner_search_for_the_picker(console):
    live, admin, li = console["live"], console["admin"], console["li"]
    await admin.post(ADMIN + "/users", {"username": "dr.li", "password": PASSWORD, "role": "doctor",
                                        "practitioner_id": li.id})
    status, found = await admin.get(ADMIN + "/practitioners")
    assert status == 200
    assert [(p["name"], (p["linked_to"] or {}).get("username")) for p in found["items"]] == [
        ("周医生", None), ("李医生", "dr.li")]  # the retired one is not offered
    for q, names in (("心内", ["李医生"]), ("pr-zhou", ["周医生"]), ("周", ["周医生"]), ("吴医生", []), ("%", [])):
        status, found = await admin.get(ADMIN + "/practitioners", params={"q": q})
        assert status == 200 and [p["name"] for p in found["items"]] == names, q

    await make_console_user("agent", "agent1", "agent-password-1")
    agent = await console_login(live, "agent1", "agent-password-1")
    status, body = await agent.get(ADMIN + "/practitioners")
    assert status == 403 and body["error"]["code"] == "role"


# -- the command line -------------------------------------------------------------------------------------------------
async def care(tmp_path: Path, database_url: str, *args: str, **env: str) -> tuple[int, str, str]:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "VAR_DIR": str(tmp_path / "var"),
            "SECRET_KEY": "cli-test-secret-key-0123456789abcdef", "LOG_LEVEL": "WARNING",
            "DATABASE_URL": database_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "care", *args, cwd=PROJECT, env=base | env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def test_link_list_and_unlink_from_the_command_line(db, database_url, tmp_path):
    found = await _practitioners()
    li, retired = found["li"], found["retired"]
    wang = await make_console_user("agent", "wang.yi", PASSWORD, name="王一")
    await make_console_user("admin", "root", PASSWORD)
    await User.create(username="nurse.li", role="staff", name="李护士", openid="oNurse")
    old = await make_console_user("doctor", "dr.old", PASSWORD, name="老周")
    await DoctorAccount.create(user=old, practitioner=found["zhou"])

    for args, message in (
        (("nobody", str(li.id)), "用户“nobody”不存在"),
        (("nurse.li", str(li.id)), "不是控制台账号"),
        (("root", str(li.id)), "是管理员账号"),
        (("wang.yi", "99999"), "未找到医生 99999"),
        (("wang.yi", "his:pr-nobody"), "未找到医生 his:pr-nobody"),
        (("wang.yi", "pr-li"), "写法不对"),
        (("wang.yi", str(retired.id)), "医生“吴医生”已停用"),
        (("wang.yi", f"his:{found['zhou'].his_id}"), "医生“周医生”已关联账号“dr.old”"),
    ):
        rc, out, err = await care(tmp_path, database_url, "link-doctor", *args)
        assert (rc, out) == (1, ""), (args, out, err)
        assert message in err, (args, err)
    assert (await User.get(id=wang.id)).role == "agent"
    assert await DoctorAccount.all().count() == 1

    rc, out, err = await care(tmp_path, database_url, "link-doctor", "wang.yi", "his:pr-li")
    assert rc == 0, err
    assert "已将账号“wang.yi”关联到医生 李医生" in out
    assert (await User.get(id=wang.id)).role == "doctor"
    assert (await DoctorAccount.get(user_id=wang.id)).practitioner_id == li.id
    linked = await AuditEntry.get(action="doctor.linked", entity_id=str(wang.id))
    assert linked.actor_label == "cli" and linked.changes["practitioner_id"] == li.id

    rc, out, err = await care(tmp_path, database_url, "list-doctors")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split("\t")[0] == "账号"
    assert lines[1:] == [f"dr.old\t老周\t{found['zhou'].id}\tpr-zhou\t周医生\t内分泌科\t启用",
                         f"wang.yi\t王一\t{li.id}\tpr-li\t李医生\t心内科\t启用"]

    rc, _, err = await care(tmp_path, database_url, "unlink-doctor", "wang.yi")
    assert rc == 2 and "--role" in err  # the account must leave with a role
    rc, out, err = await care(tmp_path, database_url, "unlink-doctor", "wang.yi", "--role", "engineer", "--disable")
    assert rc == 0, err
    assert "已取消账号“wang.yi”的医生关联" in out
    wang = await User.get(id=wang.id)
    assert (wang.role, wang.active) == ("engineer", False)
    assert not await DoctorAccount.filter(user_id=wang.id).exists()
    assert (await AuditEntry.get(action="doctor.unlinked", entity_id=str(wang.id))).actor_label == "cli"

    rc, out, err = await care(tmp_path, database_url, "unlink-doctor", "wang.yi", "--role", "agent")
    assert rc == 1 and "账号“wang.yi”未关联医生" in err
    rc, out, _ = await care(tmp_path, database_url, "list-doctors")
    assert [line.split("\t")[0] for line in out.splitlines()[1:]] == ["dr.old"]


async def test_a_link_from_the_command_line_ends_the_open_console_session(serve, settings_for, database_url,
                                                                           real_redis_url, tmp_path):
    live = await serve(settings_for(database_url, real_redis_url))
    li = (await _practitioners())["li"]
    await make_console_user("agent", "wang.yi", PASSWORD)
    before = await console_login(live, "wang.yi", PASSWORD)

    rc, _, err = await care(tmp_path, database_url, "link-doctor", "wang.yi", str(li.id), REDIS_URL=real_redis_url)

    assert rc == 0, err
    status, body = await before.get("/console/api/v1/me")
    assert status == 401 and body["error"]["code"] == "login_required"
    doctor = await console_login(live, "wang.yi", PASSWORD)
    status, mine = await doctor.get(DOCTOR_API)
    assert status == 200 and mine["practitioner"]["id"] == li.id


# -- the admin screen -------------------------------------------------------------------------------------------------
async def test_the_admin_screen_makes_a_doctor_with_the_practitioner_picker(serve, settings_for, database_url,
                                                                            browser):

    live = await serve(settings_for(database_url))
    found = await _practitioners()
    await make_console_user("admin", "root.admin", PASSWORD, name="系统管理员")
    taken = await make_console_user("doctor", "dr.zhou", PASSWORD)
    await DoctorAccount.create(user=taken, practitioner=found["zhou"])

    context, page = await signed_in_page(browser, live.url("/console/"), "root.admin", PASSWORD)
    await page.wait_for_selector("#nav-admin:not([hidden])")
    await page.click('[data-nav="admin/users"]')

    form = page.locator("#user-form")
    picker = form.locator(".practitioner-picker")
    assert not await picker.is_visible()  # agents, engineers and administrators have no practitioner
    await form.locator("input >> nth=0").fill("dr.li")
    await form.locator("input >> nth=1").fill("李医生")
    await form.locator("select >> nth=0").select_option("doctor")
    await picker.wait_for(state="visible")
    # Another account's practitioner is listed but cannot be chosen.
    await picker.locator(f'option[value="{found["zhou"].id}"]').wait_for(state="attached")
    assert await picker.locator(f'option[value="{found["zhou"].id}"]').is_disabled()
    await picker.locator("input").fill("心内")
    await picker.locator(f'option[value="{found["zhou"].id}"]').wait_for(state="detached")
    await picker.locator("select").select_option(str(found["li"].id))
    await form.locator("input[type=password]").fill(PASSWORD)
    await form.locator("button[type=submit]").click()

    row = page.locator("tr[data-id]", has_text="dr.li")
    await row.locator(f'[data-practitioner="{found["li"].id}"]').wait_for()
    assert "李医生 · 心内科" in await row.inner_text()
    user = await User.get(username="dr.li")
    assert user.role == "doctor" and (await DoctorAccount.get(user_id=user.id)).practitioner_id == found["li"].id

    # Editing: the picker shows the current practitioner; made an agent, the account loses it.
    await row.click()
    edit = page.locator(".user-detail form")
    await edit.locator(f'.practitioner-picker option[value="{found["li"].id}"]').wait_for(state="attached")
    assert await edit.locator(".practitioner-picker select").input_value() == str(found["li"].id)
    await edit.locator("select >> nth=0").select_option("agent")
    assert not await edit.locator(".practitioner-picker").is_visible()
    await edit.locator("button[type=submit]").click()
    await page.locator(f'tr[data-id="{user.id}"] .badge-role-agent').wait_for()
    assert not await DoctorAccount.filter(user_id=user.id).exists()
    assert unexpected_problems(page.problems) == []
