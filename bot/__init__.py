"""The public-account transport: WeChat callback, router and handlers."""

from bot.callback import bp

__all__ = ["bp"]
