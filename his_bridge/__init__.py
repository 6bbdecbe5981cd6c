"""The HIS's calls into medwx (``/fhir-callback/…``): the hospital information system tells us about changes it
made (an appointment accepted or declined) instead of waiting to be polled."""

from his_bridge.callback_api import bp as _callback_bp

# Each module's blueprint carries its own url_prefix; app.py registers every one in this list.
blueprints: list = [_callback_bp]

__all__ = ["blueprints"]
