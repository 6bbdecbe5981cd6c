"""``python -m care <verb>``: patient imports, hospital systems, doctors' console accounts.

  import-fhir FILE          import FHIR R4 Patient / Practitioner / Encounter (+ Condition, MedicationRequest) from a
                            Bundle, a single resource or NDJSON
  import-fhir --server      the same from the FHIR server at HIS_BASE_URL, page by page (``next`` links)
  import-csv FILE --photos DIR
                            import patients from CSV (UTF-8 or GBK) or XLSX, with their photos from DIR

  add-api-client NAME       register a hospital system that reads vitals over /fhir; prints its token once
  list-api-clients, revoke-api-client NAME|ID

  link-doctor USERNAME PRACTITIONER
                            make a console account the practitioner (role doctor): PRACTITIONER is our practitioner
                            id (digits, as list-doctors and the admin screen show it) or his:<HIS id>
  unlink-doctor USERNAME --role agent|engineer [--disable]
                            remove the link; the account gets the role given (and is disabled with --disable)
  list-doctors              console accounts linked to practitioners (and doctor accounts without one)

Patient photos are embedded and enrolled in the face index (``--no-photos`` skips them). Progress goes to stderr;
the report (in Chinese, as the people who run it read it) to stdout, and as JSON with ``--report FILE``.
Exit status: 0 imported, 1 rejected (nothing stored) or cannot start, 3 imported but some records failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from core.db import close_db, init_db
from core.errors import AppError
from core.log import configure_logging
from core.settings import Settings

PARTIAL = 3


class ProgressLine:
    """``导入 n/total`` on stderr: rewritten in place on a terminal, a line every few seconds in a log."""

    def __init__(self, stream=sys.stderr, every: float = 0.2, log_every: float = 5.0):
        self.stream, self.tty = stream, stream.isatty()
        self.every = every if self.tty else log_every
        self.last = 0.0
        self.started = time.monotonic()

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < self.every and done != total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-6)
        text = f"导入 {done}/{total}" if total else f"导入 {done}"
        text += f"（{rate:.0f} 条/秒）"
        if self.tty:
            self.stream.write("\r" + text + "   ")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")


async def _photo_step(settings: Settings, args: argparse.Namespace, closers: list):
    """The vision photo step, started for this process (weights checked, index loaded, events to the servers)."""
    if args.no_photos:
        return None
    from care.importing import enrol_with_vision
    from core.events import EventBus
    from core.redis import create_redis
    from vision import runtime
    from vision.setup import WeightsMissing

    redis = create_redis(settings)
    closers.append(redis.aclose)
    try:
        await runtime.start(settings, EventBus(redis))  # enrolments reach every server's index through events
    except WeightsMissing as exc:
        raise SystemExit(f"{exc}\n（或加 --no-photos 只导入资料，不登记照片）") from None
    closers.append(runtime.stop)
    return enrol_with_vision


def _photo_workers(settings: Settings) -> int:
    """One photo more in flight than there are embedding processes: none of them waits for the next photo."""
    return settings.face_workers + 1


def _print_report(report, args: argparse.Namespace) -> int:
    print("\n".join(report.lines()) or "没有可导入的记录")
    if args.report:
        Path(args.report).write_text(json.dumps(report.as_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    return PARTIAL if report.failed else 0


async def _import_fhir(settings: Settings, args: argparse.Namespace, closers: list) -> int:
    from care.fhir_import import import_file, import_from_server
    from integrations.his import HISClient

    if args.server and args.file:
        raise SystemExit("import-fhir: give FILE or --server, not both")
    if not args.server and not args.file:
        raise SystemExit("import-fhir: give FILE or --server")
    if args.server and not settings.his_base_url:
        raise SystemExit("import-fhir --server: set HIS_BASE_URL to the FHIR server's base URL")
    if args.file and not Path(args.file).is_file():
        raise SystemExit(f"无法读取文件 {args.file}")
    his = HISClient(settings.his_base_url) if settings.his_base_url else None
    if his is not None:
        closers.append(his.close)
    photos = await _photo_step(settings, args, closers)
    progress = ProgressLine()
    try:
        if args.server:
            params = {"_count": str(args.count)}
            report = await import_from_server(his, params=params, progress=progress, secret_key=settings.secret_key,
                                              photos=photos, photo_workers=_photo_workers(settings))
        else:
            report = await import_file(Path(args.file), progress=progress, secret_key=settings.secret_key,
                                       photos=photos, his=his, photo_workers=_photo_workers(settings))
    finally:
        progress.finish()
    return _print_report(report, args)


async def _import_csv(settings: Settings, args: argparse.Namespace, closers: list) -> int:
    from care.csv_import import import_table

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise SystemExit(f"无法读取文件 {args.file}：{exc.strerror}") from None
    photos = await _photo_step(settings, args, closers) if args.photos else None
    progress = ProgressLine()
    try:
        report = await import_table(data, Path(args.file).name, photo_dir=Path(args.photos) if args.photos else None,
                                    secret_key=settings.secret_key, photos=photos, progress=progress,
                                    photo_workers=_photo_workers(settings))
    finally:
        progress.finish()
    return _print_report(report, args)


async def _api_clients(settings: Settings, args: argparse.Namespace, closers: list) -> int:
    from care import api_clients

    if args.verb == "add-api-client":
        client, token = await api_clients.add_api_client(args.name, actor_label="cli")
        print(f"api client {client.id} “{client.name}” added; its token (shown only now):", file=sys.stderr)
        print(token)
    elif args.verb == "list-api-clients":
        for c in await api_clients.list_api_clients():
            used = c.last_used_at.isoformat(timespec="seconds") if c.last_used_at else "never"
            print(f"{c.id}\t{c.name}\t{'active' if c.active else 'revoked'}\ttoken {c.token_hint}…\tlast used {used}")
    else:
        client = await api_clients.revoke_api_client(args.name, actor_label="cli")
        print(f"api client {client.id} “{client.name}” revoked")
    return 0


# -- doctors' console accounts -----------------------------------------------------------------------------------
async def _console_account(username: str):
    """The console account USERNAME; a WeChat user (staff, patient) has no console sign-in and cannot be a doctor."""
    from core.accounts import CONSOLE_ROLES
    from core.models import User

    user = await User.get_or_none(username=username)
    if user is None:
        raise SystemExit(f"用户“{username}”不存在")
    if user.role not in CONSOLE_ROLES or not user.password_hash:
        raise SystemExit(f"“{username}”不是控制台账号（微信员工或患者不能登录控制台），请先在管理页创建控制台账号")
    return user


async def _practitioner(ref: str):
    """PRACTITIONER as typed: digits are our id; ``his:<id>`` is the HIS's id (import-fhir's Practitioner.id). One
    rule and no guessing, since a HIS id made of digits would otherwise read as either."""
    from care.models import Practitioner

    ref = ref.strip()
    if ref.lower().startswith("his:") and ref[4:].strip():
        found = await Practitioner.get_or_none(his_id=ref[4:].strip())
    elif ref.isdigit():
        found = await Practitioner.get_or_none(id=int(ref))
    else:
        raise SystemExit(f"医生“{ref}”的写法不对：写本系统医生编号（数字），或 his:<HIS 编号>")
    if found is None:
        raise SystemExit(f"未找到医生 {ref}（数字为本系统医生编号，HIS 编号请写 his:<编号>）")
    return found


async def _end_sessions(settings: Settings, user_id: int) -> None:
    """The account's open console sessions end (a new role or practitioner: sign in again), as the admin screen
    does; without REDIS_URL the sessions live only inside each server and cannot be reached from here."""
    if settings.embedded_redis:
        return
    from console.auth import end_user_sessions  # the command is an entry point, like app.py
    from core.redis import create_redis

    redis = create_redis(settings)
    try:
        await end_user_sessions(redis, user_id)
    finally:
        await redis.aclose()


def _practitioner_line(p) -> str:
    return f"{p.name}（编号 {p.id}，HIS {p.his_id or '—'}，{p.department or '未填科室'}）"


async def _doctors(settings: Settings, args: argparse.Namespace, closers: list) -> int:
    from care.consultations import link_doctor
    from core import accounts

    if args.verb == "list-doctors":
        return await _list_doctors()
    user = await _console_account(args.username)
    if args.verb == "link-doctor":
        if user.role == "admin":  # a doctor is not an administrator: the link would take their administration away
            raise SystemExit(f"“{user.username}”是管理员账号，不能直接设为医生；请为医生另建账号")
        practitioner = await _practitioner(args.practitioner)
        user, sessions_void = await accounts.operator_update_console_user(
            user.id, {"role": "doctor", "practitioner_id": practitioner.id}, link_doctor=link_doctor,
            actor_label="cli")
        print(f"已将账号“{user.username}”关联到医生 {_practitioner_line(practitioner)}")
    else:
        if user.role != "doctor" and await accounts.linked_practitioner_id(user.id) is None:
            raise SystemExit(f"账号“{user.username}”未关联医生")
        changes: dict = {"role": args.role}
        if args.disable:
            changes["active"] = False
        user, sessions_void = await accounts.operator_update_console_user(user.id, changes, link_doctor=link_doctor,
                                                                          actor_label="cli")
        state = "，并已停用" if args.disable else ""
        print(f"已取消账号“{user.username}”的医生关联，角色改为 {args.role}{state}")
    if sessions_void:
        await _end_sessions(settings, user.id)
    return 0


async def _list_doctors() -> int:
    from care.consultation_models import DoctorAccount
    from core.models import User

    links = await DoctorAccount.all().prefetch_related("user", "practitioner")
    loose = await User.filter(role="doctor").exclude(id__in=[a.user_id for a in links])
    if not links and not loose:
        print("还没有医生账号")
        return 0
    print("账号\t姓名\t医生编号\tHIS编号\t医生姓名\t科室\t状态")
    for a in sorted(links, key=lambda a: a.user.username or ""):
        u, p = a.user, a.practitioner
        state = ("启用" if u.active else "停用") + ("" if p.active else "（医生已停用）")
        print(f"{u.username}\t{u.name}\t{p.id}\t{p.his_id or '—'}\t{p.name}\t{p.department or '—'}\t{state}")
    for u in sorted(loose, key=lambda u: u.username or ""):
        print(f"{u.username}\t{u.name}\t—\t—\t（未关联医生）\t—\t{'启用' if u.active else '停用'}")
    return 0


async def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    closers: list = []
    try:
        await init_db(settings)
        verb = {"import-fhir": _import_fhir, "import-csv": _import_csv, "link-doctor": _doctors,
                "unlink-doctor": _doctors, "list-doctors": _doctors}.get(args.verb, _api_clients)
        return await verb(settings, args, closers)
    except AppError as exc:  # the input as a whole was refused: nothing stored
        print(exc.message, file=sys.stderr)
        return 1
    except SystemExit as exc:
        print(exc.code, file=sys.stderr)
        return 1
    finally:
        for close in reversed(closers):
            await close()
        await close_db()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m care", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    fhir = verbs.add_parser("import-fhir", help="import FHIR R4 patients, practitioners and encounters")
    fhir.add_argument("file", nargs="?", help="a Bundle, a resource, or NDJSON (.json / .ndjson)")
    fhir.add_argument("--server", action="store_true", help="read from the FHIR server at HIS_BASE_URL instead")
    fhir.add_argument("--count", type=int, default=100, help="page size asked of the server (_count)")
    table = verbs.add_parser("import-csv", help="import patients from CSV/XLSX and a photo folder")
    table.add_argument("file", help="the CSV or XLSX file")
    table.add_argument("--photos", metavar="DIR", help="the folder holding the photos the table names")
    for verb in (fhir, table):
        verb.add_argument("--no-photos", action="store_true", help="import the records only; enrol no photos")
        verb.add_argument("--report", metavar="FILE", help="also write the report as JSON to FILE")
    verbs.add_parser("add-api-client", help="register a hospital system reading /fhir; prints its token once") \
        .add_argument("name")
    verbs.add_parser("list-api-clients", help="the registered hospital systems")
    verbs.add_parser("revoke-api-client", help="stop a hospital system's token").add_argument("name", help="name or id")
    link = verbs.add_parser("link-doctor", help="make a console account a practitioner (role doctor)",
                            description="Link an existing console account to a practitioner; its role becomes doctor "
                                        "and it sees that practitioner's consultations on /console/doctor.")
    link.add_argument("username", help="the console account's username")
    link.add_argument("practitioner", help="our practitioner id (digits), or his:<HIS id> for the HIS's id")
    unlink = verbs.add_parser(
        "unlink-doctor", help="remove a console account's practitioner link; --role gives it its new role",
        description="A doctor's account without a practitioner could sign in to a page that shows nothing, so the "
                    "account leaves with the role it will have (agent or engineer; an administrator is made with "
                    "python -m core create-admin); --disable also stops it signing in (a doctor who left).")
    unlink.add_argument("username", help="the console account's username")
    unlink.add_argument("--role", required=True, choices=("agent", "engineer"), help="the account's new role")
    unlink.add_argument("--disable", action="store_true", help="also disable the account")
    verbs.add_parser("list-doctors", help="console accounts linked to practitioners")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
