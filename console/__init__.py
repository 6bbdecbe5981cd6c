"""The console transport: agents, engineers at a desk and administrators (``/console``, ``/console/api/v1``,
``/console/ws``). HttpOnly session cookie + CSRF header; the WebSocket uses the same cookie."""

# Each module's blueprint carries its own url_prefix; app.py registers every one in this list.
blueprints: list = []

__all__ = ["blueprints"]
