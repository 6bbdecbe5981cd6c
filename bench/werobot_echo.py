"""WeRoBot's echo bot: the reference that bench/callback.py measures medwx against.

Served by gunicorn from the separate venv bench/.venv-werobot (bench/callback.py creates it and starts it)::

    WECHAT_TOKEN=... bench/.venv-werobot/bin/gunicorn -k sync -w 2 -b 127.0.0.1:PORT --no-control-socket \
        bench.werobot_echo:app

It checks the signature over token/timestamp/nonce like medwx does, and answers every text message with a passive
text reply carrying the same content. Sessions are off unless WEROBOT_SESSION_FILE names a file: WeRoBot's
default keeps them in a SQLite file, which puts a disk write into every echo.

This module must not import anything from the project: it runs in WeRoBot's venv, not the project's.
"""

import os

from werobot import WeRoBot

_session_file = os.environ.get("WEROBOT_SESSION_FILE")
if _session_file:
    # bench/callback.py --werobot-sessions: WeRoBot's default SQLite session storage, as a stock deployment runs it,
    # in a file of the caller's choosing (WeRoBot's own default would put it in the working directory).
    from werobot.session.sqlitestorage import SQLiteStorage

    robot = WeRoBot(token=os.environ["WECHAT_TOKEN"], SESSION_STORAGE=SQLiteStorage(_session_file))
else:
    # SESSION_STORAGE=False is WeRoBot's non-deprecated spelling of enable_session=False.
    robot = WeRoBot(token=os.environ["WECHAT_TOKEN"], SESSION_STORAGE=False)


@robot.text
def echo(message):
    return message.content


# WeRoBot robots expose a Bottle app, which is a WSGI callable: gunicorn serves it as bench.werobot_echo:app.
app = robot.wsgi
