"""Never a download: the embedding process reads the weights from the prepared folder, and with the weights missing
it fails without touching the network (DeepFace alone would try dlib.net)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core.settings import PROJECT_ROOT, Settings
from tests.conftest import need_conformance
from vision.setup import check_weights, deepface_home

# -- never a download --------------------------------------------------------------------------------------------
_OFFLINE_PROBE = """
import json, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[1:] or args)[:80])
    raise OSError("network disabled by the test")
# Name look-ups too: offline, a download attempt fails there before any connection.
socket.socket.connect = socket.create_connection = socket.getaddrinfo = refuse
from vision import engine
try:
    engine.init_worker(sys.argv[1])
    result = engine.embed_photo(open(sys.argv[2], "rb").read())
    print(json.dumps({"ok": True, "faces": result["faces"], "attempts": attempts}))
except Exception as exc:
    print(json.dumps({"ok": False, "error": str(exc), "attempts": attempts}))
"""


def _probe(home: Path, photo_path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _OFFLINE_PROBE, str(home), str(photo_path)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_embedding_uses_the_prepared_weights_without_network(tmp_path):
    photo_path = need_conformance("faces", "train", "obama", "obama.jpg")
    settings = Settings(var_dir=tmp_path, secret_key="s")
    check_weights(settings)
    result = _probe(deepface_home(settings), photo_path)
    assert result == {"ok": True, "faces": 1, "attempts": []}


def test_missing_weights_fail_in_the_worker_without_a_download_attempt(tmp_path):
    photo_path = need_conformance("faces", "train", "obama", "obama.jpg")
    result = _probe(tmp_path / "no-weights-here", photo_path)
    assert result["ok"] is False and "downloading is disabled" in result["error"]
    assert result["attempts"] == []  # DeepFace on its own would have tried dlib.net here
