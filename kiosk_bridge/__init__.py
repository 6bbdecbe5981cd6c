"""The kiosk transport (``/kiosk/v1``): ``X-Kiosk-Key`` per kiosk, then ``Authorization: Bearer <kiosk session>``."""

# Each module's blueprint carries its own url_prefix; app.py registers every one in this list.
blueprints: list = []

__all__ = ["blueprints"]
