"""The one settings object, read from the environment once.

No other module reads ``os.environ``: everything configurable is a field here, documented in the README.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _persistent_dev_secret(var_dir: Path) -> str:
    """A random key kept under var/ so that a newcomer's links and sessions survive a restart.

    Production sets SECRET_KEY; this only serves the embedded default.
    """
    path = var_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        var_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        return key


@dataclass(frozen=True)
class Settings:
    # Data
    var_dir: Path = PROJECT_ROOT / "var"
    database_url: str = ""  # empty: SQLite file under var/
    redis_url: str = ""  # empty: in-process fakeredis (single process only)
    media_root: Path = PROJECT_ROOT / "var" / "media"
    # Security
    secret_key: str = ""
    face_key: str = ""  # empty: derived from SECRET_KEY (development only)
    # Faces (vision/): offline weights under DEEPFACE_HOME/.deepface/weights; empty = $VAR_DIR/deepface.
    deepface_home: str = ""
    face_threshold: float = 0.07  # cosine distance at or below which two faces are one person (bench/face.py)
    face_workers: int = 1  # embedding processes per server worker
    face_queue: int = 4  # photos waiting per server worker beyond those being embedded; more → 503
    face_max_bytes: int = 10 * 1024 * 1024
    face_preload: bool = False  # start the embedding processes with the server (bin/serve sets 1)
    # Public addresses
    public_base_url: str = "http://127.0.0.1:8000"
    # Repair-page links: the one in a scan reply expires; the one printed on a label stays on a device for years.
    repair_link_max_age: int = 24 * 3600
    label_link_max_age: int = 0  # seconds; 0 = printed label links never expire
    # A TrueType/OpenType font with Chinese glyphs for PNG labels; empty = the first known system CJK font.
    label_font: str = ""
    # WeChat public account (service account) and mini program
    wechat_token: str = ""
    wechat_app_id: str = ""
    wechat_app_secret: str = ""
    wechat_aes_key: str = ""  # EncodingAESKey, 43 characters
    wechat_mp_app_id: str = ""
    wechat_mp_app_secret: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"
    # Where phones are sent for web OAuth (``/connect/oauth2/authorize``); demos point it at the stand-in.
    wechat_open_base: str = "https://open.weixin.qq.com"
    # How long the callback may work before it answers "success" and replies later by customer-service message.
    # WeChat gives 5 s; keep a margin for the network.
    wechat_reply_window: float = 4.0
    wechat_max_body: int = 256 * 1024
    # Template message for ticket updates (first, keyword1–4, remark); unset, notifications are kept as failed.
    wechat_template_ticket: str = ""
    # Mini-program subscribe message "consultation answered" (问诊预约结果: name1 doctor, thing2 department, time3 slot,
    # phrase4 result, thing5 note); unset, the notices are recorded as skipped and nothing is sent.
    wechat_mp_template_consultation: str = ""
    # The template is a long-term subscription (WeChat allows them to medical mini programs): one "accept" lets every
    # later message through, so a credit is required but not used up. Off: one-time subscriptions, one per accept.
    wechat_mp_subscribe_long_term: bool = False
    # Hospital information system (FHIR R4)
    his_base_url: str = ""
    # WebRTC
    ice_servers: list = field(default_factory=list)
    # Consultations: how often pending appointment requests are read back from the HIS (seconds; 0 = never,
    # callbacks only), and the shared secret the HIS sends as Bearer on /fhir-callback/appointment (empty = off).
    his_poll_interval: float = 30.0
    # How often doctors' departments and free slots (PractitionerRole, Schedule, Slot) are read from the HIS
    # (seconds, first round at start; 0 = never: `python -m care.doctors sync-his` by hand or cron).
    his_schedule_interval: float = 600.0
    his_callback_secret: str = ""
    # Console (agents, engineers, admins): server-side sessions in Redis, sliding expiry; password lockout.
    console_session_ttl: int = 8 * 3600  # seconds of inactivity before the console asks for the password again
    console_lockout_failures: int = 5  # wrong passwords for one username within console_lockout_seconds → locked
    console_lockout_seconds: int = 15 * 60
    # Wrong passwords from one address (any usernames) within console_lockout_seconds before it must wait: stops a
    # guess of one password across many accounts. A hospital's NAT puts many people on one address: keep it high.
    console_ip_lockout_failures: int = 30
    # Kiosks: how long a face login's session lasts from its start (seconds)
    kiosk_session_ttl: int = 15 * 60
    # Health advice rule table (JSON, care.advice); empty = the shipped care/data/advice_rules.json. Checked at start;
    # edits are picked up while running (a broken edit is logged and the last good table kept).
    advice_rules: str = ""
    # IoT telemetry (monitoring/, iot_bridge/): the MQTT broker to consume from (empty: HTTP only), how late a reading
    # may arrive (older ones are refused: duplicates are recognised within this window), and how many batches may
    # wait in the Redis buffer before gateways are told to come back later (503).
    mqtt_url: str = ""
    iot_max_age: int = 6 * 3600
    iot_buffer_max: int = 100_000
    # Early-warning rules and preventive intervals (monitoring.rules): loaded into an empty rule table at start;
    # afterwards `python -m monitoring load-rules FILE` replaces them.
    iot_rules_file: Path = PROJECT_ROOT / "monitoring" / "data" / "rules.json"
    # Operations
    log_level: str = "INFO"
    demo_data: bool = True  # bin/serve loads demo hospitals into an empty database; set DEMO_DATA=0 in production
    timezone: str = "Asia/Shanghai"  # how times are shown to people
    # Tests: turn "no PostgreSQL/Redis answers" skips into failures (CI sets it).
    require_services: bool = False

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite://{self.var_dir / 'medwx.sqlite3'}"

    @property
    def uses_postgres(self) -> bool:
        return self.effective_database_url.startswith(("postgres://", "postgresql://", "asyncpg://"))

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        values: dict = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None or raw == "":
                continue
            if f.type in ("Path", Path):
                values[f.name] = Path(raw)
            elif f.type in ("bool", bool):
                values[f.name] = _bool(raw)
            elif f.type in ("float", float):
                values[f.name] = float(raw)
            elif f.type in ("int", int):
                values[f.name] = int(raw)
            elif f.type in ("list", list):
                values[f.name] = json.loads(raw)
            else:
                values[f.name] = raw
        settings = cls(**values)
        if not settings.secret_key:
            settings = settings.with_(secret_key=_persistent_dev_secret(settings.var_dir))
        if "MEDIA_ROOT" not in env and "VAR_DIR" in env:
            settings = settings.with_(media_root=settings.var_dir / "media")
        return settings
