"""The console's web page: ``/console/`` (one HTML shell, the app in local ES modules) and ``/console/static/…``.

The shell needs no session: its script asks ``/console/api/v1/me`` and shows the login form or the app. Everything the
page loads comes from here (the charting library is vendored under ``static/vendor``), so the Content-Security-Policy
allows only this origin; the scripts build every piece of user text with ``textContent``, never as HTML.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, html
from sanic_ext.extensions.openapi import openapi

bp = Blueprint("console_pages", url_prefix="/console")
HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
STATIC_URL = "/console/static"
bp.static("/static", STATIC_DIR, name="console_static")

PAGE_HEADERS = {
    # Only this origin; 'self' in connect-src covers the page's own WebSocket (ws:/wss: of this host).
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; media-src 'self'; "
                               "script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
_templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                         trim_blocks=True, lstrip_blocks=True)


@lru_cache(maxsize=None)
def asset(name: str) -> str:
    """A static file's URL with a content hash: a new release is never run with yesterday's cached entry script."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]
    return f"{STATIC_URL}/{name}?v={digest}"


_templates.globals["asset"] = asset


@bp.get("/", strict_slashes=False)  # /console and /console/
@openapi.definition(summary="The agents' and administrators' console (HTML)", tag="Console pages",
                    description="Login form, live ticket queue, ticket view, administration and dashboard; "
                                "the page talks to /console/api/v1 and /console/ws.")
async def console_page(request: Request) -> HTTPResponse:
    settings = request.app.ctx.settings
    return html(_templates.get_template("console.html").render(timezone=settings.timezone), headers=PAGE_HEADERS)


@bp.on_response
async def static_headers(request: Request, response: HTTPResponse) -> None:
    # Module imports inside the scripts carry no content hash: make the browser revalidate them every time.
    if request.path.startswith(STATIC_URL + "/") and response is not None:
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
