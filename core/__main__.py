"""``python -m core <verb>``: operations on the shared parts.

  migrate                 bring the schema up to date (PostgreSQL: apply migrations/; SQLite: create from models)
  makemigrations [NAME]   write a migration for model changes (needs DATABASE_URL of a PostgreSQL database)
  check-migrations        exit 1 when the models have changes that no migration holds
  demo                    load demo data (hospitals, devices, people) into a database that has no hospital yet
  create-admin USERNAME   make (or reset) a console administrator; password from --password-stdin or prompted
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from core.db import close_db, init_db, make_migration, pending_model_changes
from core.log import configure_logging
from core.settings import Settings


async def _migrate(settings: Settings) -> int:
    await init_db(settings)
    kind = "PostgreSQL (migrations)" if settings.uses_postgres else "SQLite (schema from models)"
    print(f"schema up to date on {kind}")
    return 0


async def _makemigrations(settings: Settings, name: str | None) -> int:
    if not settings.uses_postgres:
        print("makemigrations: set DATABASE_URL to a PostgreSQL database (migrations/ serves PostgreSQL)",
              file=sys.stderr)
        return 2
    await init_db(settings)
    paths = await make_migration(settings.effective_database_url, name)
    print("\n".join(f"created {p}" for p in paths) or "no changes detected")
    return 0


async def _check(settings: Settings) -> int:
    await init_db(settings, bring_schema_up_to_date=False)
    pending = await pending_model_changes(settings.effective_database_url)
    for op in pending:
        print(f"not in any migration: {op.describe() if hasattr(op, 'describe') else op}")
    print("migrations and models agree" if not pending else f"{len(pending)} change(s) need a migration")
    return 1 if pending else 0


async def _demo(settings: Settings) -> int:
    from core.demo import load_all  # opens the database itself

    print("\n".join(await load_all(settings)) or "demo loaders made nothing")
    return 0


def _new_password(from_stdin: bool) -> str | None:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        print("create-admin: the two passwords differ", file=sys.stderr)
        return None
    return first


async def _create_admin(settings: Settings, username: str, name: str | None, password: str | None) -> int:
    # The CLI is an entry point like app.py: it may reach the console's password hashing.
    from console.auth import end_user_sessions, hash_password
    from core.models import User
    from core.redis import create_redis

    if password is None:
        return 2
    if len(password) < 8:
        print("create-admin: the password needs at least 8 characters", file=sys.stderr)
        return 2
    await init_db(settings)
    password_hash = hash_password(password)
    user = await User.get_or_none(username=username)
    if user is None:
        user = await User.create(username=username, name=name or username, role="admin", active=True,
                                 password_hash=password_hash)
        print(f"admin {username} created (id {user.id})")
    else:
        user.role, user.active, user.password_hash = "admin", True, password_hash
        if name:
            user.name = name
        await user.save()
        if not settings.embedded_redis:  # a reset password ends the sessions opened with the old one
            redis = create_redis(settings)
            try:
                await end_user_sessions(redis, user.id)
            finally:
                await redis.aclose()
        print(f"admin {username} reset (id {user.id})")
    return 0


async def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    try:
        if args.verb == "migrate":
            return await _migrate(settings)
        if args.verb == "makemigrations":
            return await _makemigrations(settings, args.name)
        if args.verb == "demo":
            return await _demo(settings)
        if args.verb == "create-admin":
            return await _create_admin(settings, args.username, args.name, _new_password(args.password_stdin))
        return await _check(settings)
    finally:
        await close_db()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("migrate", help="bring the schema up to date")
    mk = verbs.add_parser("makemigrations", help="write a migration for model changes")
    mk.add_argument("name", nargs="?", help="a short name for the migration file")
    verbs.add_parser("check-migrations", help="fail when models changed without a migration")
    verbs.add_parser("demo", help="load demo data into a database without hospitals")
    admin = verbs.add_parser("create-admin", help="make or reset a console administrator")
    admin.add_argument("username")
    admin.add_argument("--name", help="the name shown in the console")
    admin.add_argument("--password-stdin", action="store_true", help="read the password from the first stdin line")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
