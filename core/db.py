"""Database set-up: tortoise-orm on PostgreSQL (production) or a SQLite file (the embedded default).

Schema policy: ``migrations/`` serves PostgreSQL and is applied at start, under an advisory lock so that several
workers and ``python -m`` commands starting at once apply it once. On SQLite the schema is created from the models
(``generate_schemas(safe=True)`` adds missing tables; it does not alter existing ones: delete the dev file after a
model change, or run PostgreSQL).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from tortoise import Tortoise, connections

from core.settings import Settings

log = logging.getLogger(__name__)

# Every module holding tortoise models, by name: tortoise imports them, so core does not import the domains.
# A new domain's models module is added here and a migration made with ``python -m core makemigrations``.
MODEL_MODULES = [
    "core.models",
    "repair.models",
    "knowledge.models",
    "care.models",
    "vision.models",
    "care.kiosk_models",
    "care.vitals_models",
    "care.consultation_models",
    "care.doctor_models",
    "monitoring.models",
]
MIGRATIONS_MODULE = "migrations"
APP_LABEL = "models"
# Any constant: two processes asking for the same advisory lock wait for each other.
_MIGRATION_LOCK_ID = 0x6D6564777801


def tortoise_config(database_url: str) -> dict:
    return {
        "connections": {"default": database_url},
        "apps": {
            APP_LABEL: {
                "models": list(MODEL_MODULES),
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _asyncpg_dsn(database_url: str) -> str:
    for prefix in ("asyncpg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql://" + database_url[len(prefix):]
    raise ValueError(f"not a PostgreSQL URL: {database_url}")


@contextlib.asynccontextmanager
async def _migration_lock(database_url: str):
    """A session-level advisory lock held on a connection of its own for the whole migration."""
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(database_url))
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        yield
    finally:
        with contextlib.suppress(Exception):
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
        await conn.close()


async def apply_migrations(database_url: str) -> list[str]:
    """Apply pending migrations (Tortoise must be initialised with ``tortoise_config(database_url)``)."""
    from tortoise.migrations.executor import MigrationExecutor

    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(f"{app_label}.{name}")
            log.info("migration applied: %s.%s", app_label, name)

    async with _migration_lock(database_url):
        executor = MigrationExecutor(connections.get("default"), tortoise_config(database_url)["apps"])
        await executor.migrate(None, progress=progress)
    return applied


async def init_db(settings: Settings, *, bring_schema_up_to_date: bool = True) -> None:
    """Open the connections and bring the schema up to date (every entry point calls this first)."""
    url = settings.effective_database_url
    if url.startswith("sqlite://"):
        Path(url[len("sqlite://"):]).parent.mkdir(parents=True, exist_ok=True)
    from tortoise.context import get_current_context

    if get_current_context() is not None:  # a previous start in this process that was not closed (a failed start)
        await close_db()
    # The global fallback lets every task (requests, listeners, background jobs) find the ORM context.
    await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)
    if not bring_schema_up_to_date:
        return
    if settings.uses_postgres:
        await apply_migrations(url)
    else:
        await Tortoise.generate_schemas(safe=True)


async def close_db() -> None:
    """Close the connections and unbind the models, so that a later ``init_db`` may use another database."""
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    await Tortoise._reset_apps()
    await Tortoise.close_connections()
    # Tortoise caches each model's SQL by connection name, not by dialect: forget it with the connection.
    EXECUTOR_CACHE.clear()


async def database_answers() -> bool:
    try:
        await connections.get("default").execute_query("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - health check: any failure means "no"
        log.warning("database health check failed", exc_info=True)
        return False


async def pending_model_changes(database_url: str) -> list:
    """Operations the models need that no migration holds yet (empty when migrations and models agree)."""
    from tortoise.migrations.autodetector import MigrationAutodetector

    autodetector = MigrationAutodetector(Tortoise.apps, tortoise_config(database_url)["apps"])
    writers = await autodetector.changes()
    return [op for w in writers for op in w.operations]


async def make_migration(database_url: str, name: str | None = None) -> list[str]:
    """Write a migration file for the model changes not yet in ``migrations/``."""
    from tortoise.migrations.autodetector import MigrationAutodetector
    from tortoise.migrations.writer import format_migration_name

    autodetector = MigrationAutodetector(Tortoise.apps, tortoise_config(database_url)["apps"])
    paths = []
    for writer in await autodetector.changes():
        if name:
            writer.name = format_migration_name(int(writer.name.split("_", 1)[0]), name)
        paths.append(str(writer.write()))
    return paths
