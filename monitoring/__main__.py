"""``python -m monitoring <verb>``: gateways (and early-warning rules) from the command line.

  add-gateway NAME --hospital ID [--rate N]   register a gateway and print its API key (shown this once only)
  list-gateways                               every gateway: id, name, hospital, active, rate limit
  revoke-gateway NAME|ID                      its key stops working (within seconds in running servers)
  load-rules FILE                             replace the early-warning rules and preventive intervals (JSON)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from core.db import close_db, init_db
from core.errors import AppError
from core.log import configure_logging
from core.settings import Settings

ACTOR = "监测管理命令"


async def _gateways(args: argparse.Namespace) -> None:
    from monitoring import gateways

    if args.verb == "add-gateway":
        gateway, key = await gateways.add_gateway(args.name, hospital_id=args.hospital, rate_limit=args.rate,
                                                  actor_label=ACTOR)
        print(f"gateway {gateway.id} “{gateway.name}” added (MQTT topic medwx/{gateway.name}/readings). "
              "Its API key (shown only now; send it as X-Gateway-Key, or as \"key\" in MQTT messages):")
        print(key)
    elif args.verb == "list-gateways":
        rows = await gateways.list_gateways()
        if not rows:
            print("no gateways")
        for g in rows:
            print(f"{g.id}\t{g.name}\t{g.hospital.name}\t{'active' if g.active else 'revoked'}\t"
                  f"{g.rate_limit}/s\tkey {g.key_hint}…")
    else:
        gateway = await gateways.revoke_gateway(await gateways.find_gateway(args.gateway), actor_label=ACTOR)
        print(f"gateway {gateway.id} “{gateway.name}” revoked")


async def _load_rules(args: argparse.Namespace) -> None:
    from pathlib import Path

    from monitoring.rules import load_rules, read_rules_file

    report = await load_rules(read_rules_file(Path(args.file)))
    print(report.text())


async def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    await init_db(settings)
    try:
        await args.handler(args)
        return 0
    except AppError as exc:
        print(f"{exc.message} ({exc.code})", file=sys.stderr)
        return 1
    finally:
        await close_db()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add-gateway", help="register a gateway and print its API key once")
    add.add_argument("name", help="letters, digits, _ . - (it is the MQTT topic level)")
    add.add_argument("--hospital", type=int, required=True, help="the hospital's id")
    add.add_argument("--rate", type=int, default=1000, help="readings per second allowed (default 1000)")
    add.set_defaults(handler=_gateways)
    verbs.add_parser("list-gateways", help="list the gateways").set_defaults(handler=_gateways)
    revoke = verbs.add_parser("revoke-gateway", help="revoke a gateway's key")
    revoke.add_argument("gateway", help="name or id")
    revoke.set_defaults(handler=_gateways)
    rules = verbs.add_parser("load-rules", help="replace the early-warning rules from a JSON file (all or nothing)")
    rules.add_argument("file", help="rules JSON, shaped like monitoring/data/rules.json")
    rules.set_defaults(handler=_load_rules)
    return parser


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_run(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
