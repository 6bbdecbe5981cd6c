"""Demo data: the shipped starter knowledge base (``knowledge/data/kb_seed.json``)."""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from knowledge.entries import import_entries
from knowledge.models import KBEntry

SEED = Path(__file__).parent / "data" / "kb_seed.json"


async def load_demo(settings: Settings | None = None) -> list[str]:
    if await KBEntry.exists():
        return []
    report = await import_entries(SEED.read_bytes(), SEED.name, actor_label="演示数据")
    return [f"demo: knowledge base — {report.text()}"]
