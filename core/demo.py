"""``python -m core demo``: demo data for a fresh installation, loaded only into a database without hospitals.

The loaders live in the domains; core names them as strings and imports them at run time (like the model modules
in ``core/db.py``), so core imports no domain. Each loader is ``async def (settings) -> list[str]`` (lines to
print).
"""

from __future__ import annotations

import importlib

from tortoise import Tortoise

from core.db import init_db
from core.models import Hospital
from core.settings import Settings

DEMO_LOADERS = [
    "repair.demo:load_demo",
    "knowledge.demo:load_demo",
]


def _loader(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


async def load_all(settings: Settings) -> list[str]:
    """Run every loader when the database has no hospital yet; what they made, or why nothing was made.

    The emptiness is judged once, before the first loader: later loaders build on what earlier ones created.
    """
    if not settings.demo_data:
        return ["demo data not loaded: DEMO_DATA=0"]
    if not Tortoise.is_inited():
        await init_db(settings)
    if await Hospital.exists():
        return ["demo data not loaded: the database already has hospitals"]
    lines: list[str] = []
    for spec in DEMO_LOADERS:
        lines += await _loader(spec)(settings)
    return lines
