"""Builds what WeChat's servers send: signed query strings, message XML, safe-mode envelopes."""

from __future__ import annotations

import hashlib
import itertools
import time

from wechatpy.crypto import WeChatCrypto

_ids = itertools.count(int(time.time() * 1000))


def sign(token: str, timestamp: str | None = None, nonce: str | None = None) -> dict:
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or str(next(_ids))
    signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce}


def text_xml(content: str, *, sender: str = "oUser0001", msg_id: int | None = None,
             to: str = "gh_medwx", create_time: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id or next(_ids)}</MsgId></xml>"
    )


def voice_xml(recognition: str | None, *, sender: str = "oUser0001") -> str:
    rec = f"<Recognition><![CDATA[{recognition}]]></Recognition>" if recognition is not None else ""
    return (
        f"<xml><ToUserName><![CDATA[gh_medwx]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[voice]]></MsgType>"
        f"<MediaId><![CDATA[media1]]></MediaId><Format><![CDATA[amr]]></Format>{rec}"
        f"<MsgId>{next(_ids)}</MsgId></xml>"
    )


def event_xml(event: str, *, sender: str = "oUser0001", key: str | None = None, create_time: int | None = None) -> str:
    key_xml = f"<EventKey><![CDATA[{key}]]></EventKey>" if key is not None else ""
    return (
        f"<xml><ToUserName><![CDATA[gh_medwx]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event>{key_xml}</xml>"
    )


def safe_mode(token: str, aes_key: str, app_id: str, xml: str) -> tuple[dict, str]:
    """(query, body) of a safe-mode delivery, made with wechatpy's crypto as WeChat would."""
    q = sign(token)
    envelope = WeChatCrypto(token, aes_key, app_id).encrypt_message(xml, q["nonce"], q["timestamp"])
    import xmltodict

    parsed = xmltodict.parse(envelope)["xml"]
    query = dict(q, encrypt_type="aes", msg_signature=parsed["MsgSignature"])
    body = f"<xml><ToUserName><![CDATA[gh_medwx]]></ToUserName><Encrypt><![CDATA[{parsed['Encrypt']}]]></Encrypt></xml>"
    return query, body
