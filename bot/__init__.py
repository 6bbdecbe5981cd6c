"""The public-account transport: WeChat callback, router and handlers."""

from bot.callback import bp
import bot.repair_handlers  # noqa: F401,E402 - registers the label-scan handlers
import bot.robot_handlers  # noqa: F401,E402 - text and recognised voice go to the robot

__all__ = ["bp"]
