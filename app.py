"""The Sanic app factory: ``sanic app:create_app --factory`` serves it with settings from the environment."""

from __future__ import annotations

import asyncio
import logging
import uuid

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
    app.config.API_TITLE = "medwx"
    app.ctx.settings = settings
    Extend(app)

    _install_request_ids(app)
    _install_error_handler(app)
    _install_lifecycle(app, settings)
    _install_health(app)

    from bot import bp as bot_bp
    from console import blueprints as console_blueprints
    from kiosk_bridge import blueprints as kiosk_blueprints
    from miniprogram_api import bp as mp_bp

    app.blueprint(bot_bp)
    app.blueprint(mp_bp)
    for blueprint in (*console_blueprints, *kiosk_blueprints):
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
        app.ctx.redis = create_redis(settings)
        app.ctx.events = EventBus(app.ctx.redis)
        app.ctx.wechat = WeChatClient(settings, app.ctx.redis)
        register_listeners(app.ctx.events, settings, app.ctx.wechat)
        from console.ws import LiveQueue

        app.ctx.live_queue = LiveQueue(app.ctx.events)  # this worker's console sockets; listens to ticket events
        await app.ctx.events.start()
        # Faces: weights checked (a clear error here, never a download later), index loaded after the event
        # listeners started, so no enrolment falls between the load and the first event.
        from vision import runtime as faces_runtime

        await faces_runtime.start(settings, app.ctx.events)
        app.ctx.housekeeping = asyncio.create_task(_housekeeping(app.ctx.events))

    @app.after_server_stop
    async def close_resources(app: Sanic):
        from knowledge.robot import LOGS

        app.ctx.housekeeping.cancel()
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


def register_listeners(events: EventBus, settings: Settings, wechat: WeChatClient) -> None:
    """Every reaction to a domain event, in one place (adding a reaction = adding a listener here)."""
    from knowledge.robot import KB
    from repair.messaging import TicketNotifier
    from repair.service_groups import rebuild_service_groups
    from vision.index import apply_event as refresh_face_index

    TicketNotifier(settings, wechat).register(events)
    # Every worker keeps its face matrix in step with enrolments and deletions made by any worker.
    events.on("face.enrolled", "face.forgotten")(refresh_face_index)
    KB.expire()  # a new start (or a new database): read the knowledge base afresh

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
    from repair.tickets import close_stale_done

    while True:
        await asyncio.sleep(every)
        try:
            await close_stale_done(events=events)
        except Exception:  # noqa: BLE001 - try again next round
            log.exception("housekeeping failed")


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
