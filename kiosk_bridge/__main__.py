"""``python -m kiosk_bridge <verb>``: kiosks from the command line.

  add-kiosk NAME [--hospital ID]   register a kiosk and print its API key (shown this once only)
  list-kiosks                      every kiosk: id, name, hospital, active, last seen
  revoke-kiosk NAME|ID             the key (and the kiosk's open sessions) stop working at once
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from core.db import close_db, init_db
from core.errors import AppError
from core.log import configure_logging
from core.settings import Settings

ACTOR = "终端管理命令"


async def _run(args: argparse.Namespace) -> int:
    from care import kiosks

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    await init_db(settings)
    try:
        if args.verb == "add-kiosk":
            kiosk, key = await kiosks.add_kiosk(args.name, hospital_id=args.hospital, actor_label=ACTOR)
            print(f"kiosk {kiosk.id} “{kiosk.name}” added. Its API key (shown only now; send it as X-Kiosk-Key):")
            print(key)
        elif args.verb == "list-kiosks":
            rows = await kiosks.list_kiosks()
            if not rows:
                print("no kiosks")
            for k in rows:
                seen = k.last_seen.isoformat(timespec="seconds") if k.last_seen else "never"
                hospital = k.hospital.name if k.hospital else "-"
                print(f"{k.id}\t{k.name}\t{hospital}\t{'active' if k.active else 'revoked'}\tkey {k.key_hint}…"
                      f"\tlast seen {seen}")
        else:
            kiosk = await kiosks.revoke_kiosk(await kiosks.find_kiosk(args.kiosk), actor_label=ACTOR)
            print(f"kiosk {kiosk.id} “{kiosk.name}” revoked")
        return 0
    except AppError as exc:
        print(f"{exc.message} ({exc.code})", file=sys.stderr)
        return 1
    finally:
        await close_db()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiosk_bridge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add-kiosk", help="register a kiosk and print its API key once")
    add.add_argument("name")
    add.add_argument("--hospital", type=int, default=None, help="the hospital's id")
    verbs.add_parser("list-kiosks", help="list the kiosks")
    verbs.add_parser("revoke-kiosk", help="revoke a kiosk's key").add_argument("kiosk", help="name or id")
    return asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
