"""``python -m repair <verb>``: operations on the repair domain.

  import-devices FILE --hospital NAME [--dry-run]
      import one hospital's devices from CSV (UTF-8 or GBK) or XLSX; prints the report (in Chinese, as users read
      it); exit status 1 when the file was rejected (then nothing was stored).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from core.db import close_db, init_db
from core.errors import AppError
from core.log import configure_logging
from core.settings import Settings


async def _import_devices(args: argparse.Namespace) -> int:
    from repair.importer import hospital_by_name, import_devices

    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"无法读取文件 {path}：{exc.strerror}", file=sys.stderr)
        return 1
    try:
        hospital = await hospital_by_name(args.hospital)
    except AppError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    report = await import_devices(hospital, data, path.name, dry_run=args.dry_run, actor_label="命令行导入")
    print(report.text())
    return 0 if report.accepted else 1


async def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    try:
        await init_db(settings)
        return await _import_devices(args)
    finally:
        await close_db()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repair", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    imp = verbs.add_parser("import-devices", help="import a hospital's devices from CSV or XLSX")
    imp.add_argument("file", help="the CSV or XLSX file")
    imp.add_argument("--hospital", required=True, help="the hospital's name (or one of its aliases)")
    imp.add_argument("--dry-run", action="store_true", help="check and report only; store nothing")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
