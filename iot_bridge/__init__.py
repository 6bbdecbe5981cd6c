"""The gateways' transport: ``POST /iot/v1/readings`` (``X-Gateway-Key``) and the MQTT consumer (``iot_bridge.mqtt``).

Both hand the readings to ``monitoring.ingest.accept``; the message formats are in ``iot_bridge.readings_api``.
"""

from iot_bridge.readings_api import bp as readings_bp

# Each module's blueprint carries its own url_prefix; app.py registers every one in this list.
blueprints: list = [readings_bp]

__all__ = ["blueprints"]
