"""``python -m kiosk_bridge``: adding a kiosk prints its key once, listing shows it, revoking stops the key."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from care import kiosks
from care.kiosk_models import Kiosk
from core.errors import Unauthorized
from core.models import Hospital
from core.settings import PROJECT_ROOT


async def run(settings, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "VAR_DIR": str(settings.var_dir),
           "SECRET_KEY": settings.secret_key, "REDIS_URL": "", "LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kiosk_bridge", *args, cwd=PROJECT_ROOT,
                                                env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_add_list_revoke(db):
    hospital = await Hospital.create(name="市第一人民医院")
    code, out, err = await run(db, "add-kiosk", "门诊大厅1号机", "--hospital", str(hospital.id))
    assert code == 0, err
    key = out.strip().splitlines()[-1]
    assert key.startswith(kiosks.KEY_PREFIX) and len(key) > 40
    stored = await Kiosk.get(name="门诊大厅1号机")
    assert stored.hospital_id == hospital.id and key not in (stored.key_hash, stored.key_hint)
    assert (await kiosks.authenticate(key)).id == stored.id

    code, out, _ = await run(db, "list-kiosks")
    assert code == 0 and "门诊大厅1号机" in out and "市第一人民医院" in out and "active" in out
    assert key not in out  # the key is shown once, at creation

    code, _, err = await run(db, "add-kiosk", "门诊大厅1号机")
    assert code == 1 and "已有" in err

    code, out, _ = await run(db, "revoke-kiosk", "门诊大厅1号机")
    assert code == 0 and "revoked" in out
    with pytest.raises(Unauthorized):
        await kiosks.authenticate(key)
    code, _, err = await run(db, "revoke-kiosk", "没有这台")
    assert code == 1 and "未找到" in err
