"""The FHIR read API (``/fhir/…``) for registered hospital systems (bearer API token), and for a patient's own
strong kiosk session or mini program."""

from fhir_api.observations import bp as _observations_bp

# Each module's blueprint carries its own url_prefix; app.py registers every one in this list.
blueprints: list = [_observations_bp]

__all__ = ["blueprints"]
