from pathlib import Path

from core.settings import Settings


def test_settings_come_from_the_environment(tmp_path):
    s = Settings.from_env({
        "VAR_DIR": str(tmp_path), "DATABASE_URL": "postgres://u@h:5432/db", "REDIS_URL": "redis://h:6379/0",
        "WECHAT_TOKEN": "tok", "WECHAT_REPLY_WINDOW": "2.5", "REQUIRE_SERVICES": "1",
        "ICE_SERVERS": '[{"urls": "stun:127.0.0.1:3478"}]',
    })
    assert s.uses_postgres and not s.embedded_redis
    assert s.wechat_token == "tok" and s.wechat_reply_window == 2.5 and s.require_services
    assert s.ice_servers == [{"urls": "stun:127.0.0.1:3478"}]
    assert s.media_root == tmp_path / "media"


def test_the_embedded_default_needs_nothing(tmp_path):
    s = Settings.from_env({"VAR_DIR": str(tmp_path)})
    assert s.effective_database_url == f"sqlite://{tmp_path / 'medwx.sqlite3'}"
    assert s.embedded_redis
    # A random secret, kept across restarts so that signed links stay valid.
    assert len(s.secret_key) > 40
    assert Settings.from_env({"VAR_DIR": str(tmp_path)}).secret_key == s.secret_key
    assert (Path(tmp_path) / "secret_key").stat().st_mode & 0o077 == 0
