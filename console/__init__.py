"""The console transport: agents, engineers at a desk and administrators (``/console``, ``/console/api/v1``,
``/console/ws``). HttpOnly session cookie + CSRF header; the WebSocket uses the same cookie."""

# Each module's blueprint carries its own url_prefix; app.py registers every one in this list.
blueprints: list = []

from console.auth_routes import bp as _auth_bp  # noqa: E402 - the list exists before the modules that fill it

from console.ws import bp as _ws_bp  # noqa: E402

blueprints.extend([_auth_bp, _ws_bp])

from console.pages import bp as _pages_bp  # noqa: E402

blueprints.append(_pages_bp)

from console.admin_api import bp as _admin_bp  # noqa: E402
from console.dashboard_api import bp as _dashboard_bp  # noqa: E402

blueprints.extend([_admin_bp, _dashboard_bp])

from console.tickets_api import bp as _tickets_bp  # noqa: E402

blueprints.append(_tickets_bp)

from console.consultations_api import bp as _consultations_bp  # noqa: E402

blueprints.append(_consultations_bp)

from console.monitoring_api import bp as _monitoring_bp  # noqa: E402

blueprints.append(_monitoring_bp)

__all__ = ["blueprints"]
