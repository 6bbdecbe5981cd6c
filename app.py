"""The Sanic app factory: ``sanic app:create_app --factory`` serves it with settings from the environment."""

from __future__ import annotations

import asyncio
import logging
import uuid
from functools import partial

from sanic import Sanic, json
from sanic.exceptions import SanicException
from sanic.request import Request
from sanic_ext import Extend

from core import errors
from core.db import close_db, database_answers, init_db
from core.events import EventBus
from core.log import configure_logging, request_id
from core.redis import create_redis, redis_answers
from core.settings import Settings
from integrations.wechat import WeChatClient

log = logging.getLogger("medwx")


def create_app(settings: Settings | None = None) -> Sanic:
    # `sanic app:create_app --factory` passes its parsed command line here: settings still come from the environment.
    if not isinstance(settings, Settings):
        settings = Settings.from_env()
    configure_logging(settings.log_level)
    if len(settings.secret_key) < 32:
        log.warning("SECRET_KEY is shorter than 32 characters: links and sessions are easier to forge")
    app = Sanic("medwx", configure_logging=False)
    app.config.REQUEST_MAX_SIZE = 64 * 1024 * 1024  # uploads; the WeChat callback applies its own smaller limit
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.OAS_UI_DEFAULT = "swagger"
    app.config.OAS_URL_PREFIX = "/docs"
    # The docs page loads Swagger UI from this server, not a CDN: a hospital network may have no internet.
    app.config.OAS_UI_SWAGGER_CDN_URL = SWAGGER_ASSETS
    app.config.OAS_UI_SWAGGER_VERSION = SWAGGER_VERSION
    app.config.OAS_UI_REDOC = False  # its page would load from a CDN too
    app.config.API_TITLE = "medwx"
    app.ctx.settings = settings
    app.config.HTTP_AUTO_OPTIONS = False
    app.config.CORS_AUTOMATIC_OPTIONS = False
    app.config.HTTP_AUTO_HEAD = False
    Extend(app)

    _install_request_ids(app)
    _install_error_handler(app)
    _install_lifecycle(app, settings)
    _install_health(app)
    _install_docs_assets(app)

    from bot import bp as bot_bp
    from console import blueprints as console_blueprints
    from fhir_api import blueprints as fhir_blueprints
    from his_bridge import blueprints as his_blueprints
    from iot_bridge import blueprints as iot_blueprints
    from kiosk_bridge import blueprints as kiosk_blueprints
    from miniprogram_api import bp as mp_bp

    app.blueprint(bot_bp)
    app.blueprint(mp_bp)
    for blueprint in (*console_blueprints, *kiosk_blueprints, *iot_blueprints, *his_blueprints,
                      *fhir_blueprints):
        app.blueprint(blueprint)
    return app


def _install_request_ids(app: Sanic) -> None:
    @app.on_request(priority=100)
    async def assign_request_id(request: Request):
        rid = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        request.ctx.request_id = rid
        request.ctx.request_id_token = request_id.set(rid)

    @app.on_response(priority=100)
    async def echo_request_id(request: Request, response):
        rid = getattr(request.ctx, "request_id", None)
        if rid and response is not None:
            response.headers["X-Request-ID"] = rid


def _install_error_handler(app: Sanic) -> None:
    @app.exception(errors.AppError)
    async def app_error(request: Request, exc: errors.AppError):
        log.info("%s %s -> %s %s", request.method, request.path, exc.status, exc.code)
        return json(exc.to_body(), status=exc.status, headers=exc.headers)

    @app.exception(SanicException)
    async def sanic_error(request: Request, exc: SanicException):
        status = getattr(exc, "status_code", 500) or 500
        if status >= 500:
            log.exception("server error on %s %s", request.method, request.path, exc_info=exc)
            return json({"error": {"code": "server_error", "message": "服务器内部错误"}}, status=status)
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(status, "bad_request")
        return json({"error": {"code": code, "message": str(exc) or code}}, status=status,
                    headers=getattr(exc, "headers", None) or {})

    @app.exception(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        rid = getattr(request.ctx, "request_id", "-")
        return json({"error": {"code": "server_error", "message": f"服务器内部错误（请求号 {rid}）"}}, status=500)


def _install_lifecycle(app: Sanic, settings: Settings) -> None:
    @app.main_process_start
    async def refuse_embedded_redis_with_workers(app: Sanic):
        # The in-process Redis lives inside one worker: several workers would each dedupe and cache on their own.
        if settings.embedded_redis and app.state.workers > 1:
            raise RuntimeError("several workers need a real Redis: set REDIS_URL (e.g. redis://127.0.0.1:6379/0)")

    @app.before_server_start
    async def open_resources(app: Sanic):
        await init_db(settings)
        from monitoring.rules import ensure_rules

        await ensure_rules(settings.iot_rules_file)  # the shipped early-warning rules into an empty table
        from care import advice

        advice.configure(settings.advice_rules)  # a broken advice rule file stops the start, naming rule and field
        app.ctx.redis = create_redis(settings)
        app.ctx.events = EventBus(app.ctx.redis)
        app.ctx.wechat = WeChatClient(settings, app.ctx.redis)
        # The HIS (FHIR): consultation requests go there; their answers are polled here (and may be called back).
        from integrations.his import HISClient

        app.ctx.his = HISClient(settings.his_base_url) if settings.his_base_url else None
        register_listeners(app.ctx.events, settings, app.ctx.wechat, his=app.ctx.his)
        from console.ws import LiveQueue

        app.ctx.live_queue = LiveQueue(app.ctx.events)  # this worker's console sockets; listens to ticket events
        await app.ctx.events.start()
        # Faces: weights checked (a clear error here, never a download later), index loaded after the event
        # listeners started, so no enrolment falls between the load and the first event.
        from vision import runtime as faces_runtime

        await faces_runtime.start(settings, app.ctx.events)
        app.ctx.housekeeping = asyncio.create_task(_housekeeping(app.ctx.events))
        app.ctx.his_poll = (asyncio.create_task(_poll_his(app.ctx.his, app.ctx.redis, app.ctx.events,
                                                          settings.his_poll_interval))
                            if app.ctx.his and settings.his_poll_interval > 0 else None)
        app.ctx.his_schedules = (asyncio.create_task(_sync_his_schedules(app.ctx.his, app.ctx.redis,
                                                                         settings.his_schedule_interval))
                                 if app.ctx.his and settings.his_schedule_interval > 0 else None)
        await _start_telemetry(app, settings)

    @app.after_server_stop
    async def close_resources(app: Sanic):
        from knowledge.robot import LOGS

        app.ctx.housekeeping.cancel()
        if app.ctx.his_poll:
            app.ctx.his_poll.cancel()
        if app.ctx.his_schedules:
            app.ctx.his_schedules.cancel()
        if app.ctx.his:
            await app.ctx.his.close()
        for telemetry in app.ctx.telemetry:
            await telemetry.stop()
        try:
            await LOGS.flush()
        except Exception:  # noqa: BLE001 - the database went first (tests); nothing else to do with them
            log.exception("question log batch not written at shutdown")
        await app.ctx.events.stop()
        from vision import runtime as faces_runtime

        await faces_runtime.stop()
        await app.ctx.wechat.close()
        await app.ctx.redis.aclose()
        await close_db()


async def _start_telemetry(app: Sanic, settings: Settings) -> None:
    """Every worker stores buffered readings; with MQTT_URL set it also takes its share of the MQTT messages."""
    from monitoring.ingest import ReadingConsumer

    app.ctx.readings = ReadingConsumer(app.ctx.redis, app.ctx.events)
    app.ctx.telemetry = [app.ctx.readings]
    if settings.mqtt_url:
        from iot_bridge.mqtt import MqttIngest

        app.ctx.mqtt = MqttIngest(settings, app.ctx.redis)
        app.ctx.telemetry.insert(0, app.ctx.mqtt)  # stopped first: nothing new arrives while the rest winds down
    for telemetry in app.ctx.telemetry:
        await telemetry.start()


def register_listeners(events: EventBus, settings: Settings, wechat: WeChatClient, *, his=None) -> None:
    """Every reaction to a domain event, in one place (adding a reaction = adding a listener here)."""
    from knowledge.robot import KB
    from repair.messaging import TicketNotifier
    from repair.service_groups import rebuild_service_groups
    from vision.index import apply_event as refresh_face_index

    TicketNotifier(settings, wechat).register(events)
    # A device alert is answered once its preventive ticket is done or closed.
    from monitoring.alerts import close_for_ticket

    events.on("ticket.state_changed", once=True, group="monitoring.close-alerts")(close_for_ticket)
    # Every worker keeps its face matrix in step with enrolments and deletions made by any worker.
    events.on("face.enrolled", "face.forgotten")(refresh_face_index)
    KB.expire()  # a new start (or a new database): read the knowledge base afresh
    if his is not None:  # a consultation cancelled or ended here: its Appointment at the HIS says so too
        from care.consultations import tell_his

        events.on("consultation.cancelled", "consultation.ended", once=True,
                  group="care.his-appointment-status")(partial(tell_his, his=his))
    # The HIS answered a consultation request: the patient's mini-program users hear of it by subscribe message.
    from care.consultation_notices import ConsultationNotifier

    events.on("consultation.accepted", "consultation.declined", once=True,
              group="care.notify-consultation")(ConsultationNotifier(settings, wechat).on_answer)

    @events.on("kb.changed")
    async def refresh_robot(event):
        """Every worker answers from the new entries at its next question."""
        KB.expire()

    @events.on("user.bound", once=True, group="repair.service-groups")
    async def join_service_group(event):
        """A member of staff bound to a hospital joins its service group."""
        if event.data.get("hospital_id"):
            await rebuild_service_groups(event.data["hospital_id"])


async def _housekeeping(events: EventBus, every: float = 600.0) -> None:
    """Periodic chores; each is idempotent, so running in every worker is harmless."""
    from monitoring.preventive import run_schedules
    from repair.tickets import close_stale_done

    while True:
        await asyncio.sleep(every)
        try:
            await close_stale_done(events=events)
            await run_schedules(events=events)  # scheduled preventive maintenance (one worker per round)
        except Exception:  # noqa: BLE001 - try again next round
            log.exception("housekeeping failed")


async def _poll_his(his, redis, events: EventBus, every: float) -> None:
    """Read back unanswered consultation requests from the HIS; one worker per round (a Redis key claims it)."""
    from care.consultations import poll_pending

    while True:
        await asyncio.sleep(every)
        try:
            if await redis.set("his:poll:claimed", "1", nx=True, ex=max(1, int(every * 0.9))):
                await poll_pending(his, events=events)
        except Exception:  # noqa: BLE001 - try again next round
            log.exception("polling the HIS for appointment answers failed")


async def _sync_his_schedules(his, redis, every: float) -> None:
    """Doctors' departments and free slots from the HIS, at start and then every round; one worker per round."""
    from care.doctors import sync_from_his

    while True:
        try:
            if await redis.set("his:schedules:claimed", "1", nx=True, ex=max(1, int(every * 0.9))):
                await sync_from_his(his)
        except Exception:  # noqa: BLE001 - try again next round
            log.exception("reading doctors' schedules from the HIS failed")
        await asyncio.sleep(every)


SWAGGER_ASSETS = "/docs/ui"
SWAGGER_VERSION = "4.15.5"  # the one swagger-ui-bundle 1.1.0 carries
# The names sanic-ext's page asks for → the files swagger-ui-bundle ships.
_SWAGGER_FILES = {"swagger-ui.min.css": "swagger-ui.css", "swagger-ui-bundle.min.js": "swagger-ui-bundle.js",
                  "swagger-ui-standalone-preset.min.js": "swagger-ui-standalone-preset.js"}


def _install_docs_assets(app: Sanic) -> None:
    from sanic.response import file

    @app.get(f"{SWAGGER_ASSETS}/<version:str>/<name:str>", name="docs_asset")
    async def docs_asset(request: Request, version: str, name: str):
        """Swagger UI's script and style for /docs, from the installed package (three known names only)."""
        from swagger_ui_bundle import swagger_ui_path

        if version != SWAGGER_VERSION or name not in _SWAGGER_FILES:
            raise errors.NotFound("未找到该文件", code="not_found")
        return await file(str(swagger_ui_path / _SWAGGER_FILES[name]),
                          headers={"Cache-Control": "public, max-age=86400"})


def _install_health(app: Sanic) -> None:
    @app.get("/healthz")
    async def healthz(request: Request):
        """Database and Redis answer: 200, else 503 with what failed."""
        checks = {
            "database": await database_answers(),
            "redis": await redis_answers(request.app.ctx.redis),
        }
        ok = all(checks.values())
        return json({"status": "ok" if ok else "degraded", "checks": checks}, status=200 if ok else 503)
