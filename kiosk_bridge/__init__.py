"""The kiosk transport (``/kiosk/v1``): ``X-Kiosk-Key`` per kiosk, then ``Authorization: Bearer <kiosk session>``."""

from kiosk_bridge.sessions_api import bp as sessions_bp

# Each module's blueprint carries its own url_prefix; app.py registers every one in this list.
blueprints: list = [sessions_bp]

from kiosk_bridge.consultations_api import bp as _consultations_bp  # noqa: E402

blueprints.append(_consultations_bp)

from kiosk_bridge.doctors_api import bp as _doctors_bp  # noqa: E402

blueprints.append(_doctors_bp)

from kiosk_bridge.observations_api import bp as _observations_bp  # noqa: E402

blueprints.append(_observations_bp)

__all__ = ["blueprints"]
