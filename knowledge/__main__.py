"""``python -m knowledge <verb>``: the knowledge base from the command line.

  import FILE        import entries from JSON or CSV (all or nothing; re-import updates by id)
  export FILE        write the active entries as JSON or CSV (by the file's extension)

A running server notices an import within seconds: the version is in the database, and with a real Redis a
``kb.changed`` event makes every worker look at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from core.db import close_db, init_db
from core.log import configure_logging
from core.settings import Settings
from knowledge.entries import export_entries, import_entries


async def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    await init_db(settings)
    try:
        path = Path(args.file)
        if args.verb == "export":
            path.write_bytes(await export_entries("csv" if path.suffix.lower() == ".csv" else "json"))
            print(f"exported to {path}")
            return 0
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 2
        report = await import_entries(data, path.name, actor_label="知识库导入命令")
        print(report.text())
        if report.accepted and not settings.embedded_redis:
            await _announce(settings)
        return 0 if report.accepted else 1
    finally:
        await close_db()


async def _announce(settings: Settings) -> None:
    from core.events import EventBus
    from core.redis import create_redis

    redis = create_redis(settings)
    try:
        await EventBus(redis).publish("kb.changed", {"by": "command"})
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m knowledge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("import", help="import entries from JSON or CSV").add_argument("file")
    verbs.add_parser("export", help="export entries to JSON or CSV").add_argument("file")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
