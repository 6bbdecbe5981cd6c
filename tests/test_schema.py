"""The schema on both databases, and PostgreSQL's migrations against the models."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from tortoise import Tortoise

from core.db import MODEL_MODULES, close_db, init_db, pending_model_changes
from core.settings import Settings
from tests.conftest import TEST_POSTGRES_URL, _create_pg_database, _drop_pg_database, need_service


async def _columns(url: str) -> dict:
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name, data_type, is_nullable, character_maximum_length "
            "FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'tortoise_migrations'")
        indexes = await conn.fetch(
            "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename <> 'tortoise_migrations'")
    finally:
        await conn.close()
    return {
        "columns": {(r["table_name"], r["column_name"]): (r["data_type"], r["is_nullable"],
                                                          r["character_maximum_length"]) for r in rows},
        "unique": sorted((r["tablename"], "UNIQUE" in r["indexdef"]) for r in indexes),
    }


async def test_migrations_build_the_same_schema_as_the_models(tmp_path):
    """Apply migrations/ to one database and create another from the models: the two must match."""
    need_service("PostgreSQL", TEST_POSTGRES_URL)
    migrated, generated = await _create_pg_database(empty=True), await _create_pg_database(empty=True)
    try:
        await init_db(Settings(var_dir=tmp_path, database_url=migrated, secret_key="t"))
        assert await pending_model_changes(migrated) == [], "models changed without a migration"
        await close_db()
        await Tortoise.init(config={"connections": {"default": generated},
                                    "apps": {"models": {"models": MODEL_MODULES}}})
        await Tortoise.generate_schemas()
        await close_db()
        assert await _columns(migrated) == await _columns(generated)
    finally:
        await close_db()
        await _drop_pg_database(migrated)
        await _drop_pg_database(generated)


async def test_bringing_the_schema_up_to_date_twice_keeps_the_data(database_url, tmp_path):
    from core.models import WechatUser

    settings = Settings(var_dir=tmp_path, database_url=database_url, secret_key="t")
    await init_db(settings)
    await WechatUser.create(openid="oKeep")
    await close_db()
    await init_db(settings)  # a restart, or a python -m command beside the server
    try:
        assert await WechatUser.filter(openid="oKeep").count() == 1
    finally:
        await close_db()


@pytest.mark.parametrize("workers", [3])
async def test_concurrent_starts_apply_migrations_once(tmp_path, workers):
    """Several workers starting together: the advisory lock lets one migrate, the others find it done."""
    need_service("PostgreSQL", TEST_POSTGRES_URL)
    from core.db import apply_migrations, tortoise_config

    url = await _create_pg_database(empty=True)
    try:
        await Tortoise.init(config=tortoise_config(url))
        import asyncio

        results = await asyncio.gather(*(apply_migrations(url) for _ in range(workers)))
        migration_files = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "migrations").glob("0*.py"))
        assert sorted(len(r) for r in results) == [0] * (workers - 1) + [len(migration_files)]
    finally:
        await close_db()
        await _drop_pg_database(url)
