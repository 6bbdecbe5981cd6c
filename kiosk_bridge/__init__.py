"""The kiosk transport (``/kiosk/v1``): ``X-Kiosk-Key`` per kiosk, then ``Authorization: Bearer <kiosk session>``."""

from kiosk_bridge.sessions_api import bp as sessions_bp

# Each module's blueprint carries its own url_prefix; app.py registers every one in this list.
blueprints: list = [sessions_bp]

__all__ = ["blueprints"]
