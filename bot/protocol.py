"""WeChat's callback protocol: signatures, safe-mode crypto and message parsing, all through wechatpy.

Everything here is pure (no I/O), so it is cheap to test against the official vectors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.messages import BaseMessage
from wechatpy.utils import check_signature

from core.settings import Settings

# WeChat never sends a DTD: refusing one outright closes entity expansion (billion laughs) and external entities,
# whatever the XML parser below would do with them.
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class Forged(Exception):
    """The request does not carry our signature: answer 403 and process nothing."""


class Unreadable(Exception):
    """Signed by WeChat but not a message we can read: answer ``success`` and log why."""


@dataclass(frozen=True)
class Inbound:
    message: BaseMessage
    encrypted: bool
    nonce: str
    timestamp: str

    @property
    def dedupe_key(self) -> str:
        """MsgId for messages; FromUserName + CreateTime + Event for events (they have no MsgId)."""
        raw = self.message._data  # wechatpy keeps the parsed fields
        msg_id = raw.get("MsgId") or raw.get("MsgID")
        if msg_id and self.message.type != "event":
            return f"m:{msg_id}"
        return f"e:{self.message.source}:{raw.get('CreateTime', '')}:{raw.get('Event', '')}:{raw.get('EventKey', '')}"


class WeChatProtocol:
    def __init__(self, settings: Settings):
        self.token = settings.wechat_token
        self.max_body = settings.wechat_max_body
        self.crypto = (
            WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_app_id)
            if settings.wechat_aes_key else None
        )

    # -- signatures ---------------------------------------------------------------------------------------------
    def check(self, args) -> None:
        """The plain signature every callback carries (GET and POST, both modes)."""
        signature, timestamp, nonce = args.get("signature"), args.get("timestamp"), args.get("nonce")
        if not (self.token and signature and timestamp and nonce):
            raise Forged("missing signature parameters or no token configured")
        try:
            check_signature(self.token, signature, timestamp, nonce)
        except InvalidSignatureException as exc:
            raise Forged("bad signature") from exc

    def verify_url(self, args) -> str:
        """Server-configuration check: echo ``echostr`` when the signature is ours."""
        self.check(args)
        return args.get("echostr", "")

    # -- inbound --------------------------------------------------------------------------------------------------
    def read(self, body: bytes, args) -> Inbound:
        self.check(args)
        timestamp, nonce = args.get("timestamp"), args.get("nonce")
        if len(body) > self.max_body:
            raise Unreadable(f"body of {len(body)} bytes exceeds {self.max_body}")
        if _DTD.search(body):
            raise Unreadable("XML with a DTD")
        encrypted = args.get("encrypt_type", "raw").lower() == "aes"
        if encrypted:
            xml = self._decrypt(body, args.get("msg_signature", ""), timestamp, nonce)
        else:
            xml = body
        try:
            message = parse_message(xml.decode("utf-8") if isinstance(xml, bytes) else xml)
        except Exception as exc:  # noqa: BLE001 - xmltodict/expat/KeyError: any malformed message
            raise Unreadable(f"malformed message XML: {type(exc).__name__}") from exc
        if message is None or not getattr(message, "source", None):
            raise Unreadable("empty message")
        return Inbound(message=message, encrypted=encrypted, nonce=nonce, timestamp=timestamp)

    def _decrypt(self, body: bytes, msg_signature: str, timestamp: str, nonce: str) -> str:
        if self.crypto is None:
            raise Unreadable("safe-mode message but WECHAT_AES_KEY is not set")
        if not msg_signature:
            raise Forged("safe mode without msg_signature")
        try:
            xml = self.crypto.decrypt_message(body, msg_signature, timestamp, nonce)
        except InvalidSignatureException as exc:
            raise Forged("bad msg_signature") from exc
        except InvalidAppIdException as exc:
            raise Unreadable("message for another appid") from exc
        except Exception as exc:  # noqa: BLE001 - bad base64, padding, XML: signed but unreadable
            raise Unreadable(f"undecryptable body: {type(exc).__name__}") from exc
        if _DTD.search(xml.encode("utf-8") if isinstance(xml, str) else xml):
            raise Unreadable("decrypted XML with a DTD")
        return xml

    # -- outbound -------------------------------------------------------------------------------------------------
    def wrap(self, reply_xml: str, inbound: Inbound) -> str:
        """A passive reply, encrypted when the message came encrypted."""
        if not reply_xml:
            return "success"
        if inbound.encrypted and self.crypto is not None:
            return self.crypto.encrypt_message(reply_xml, inbound.nonce, inbound.timestamp)
        return reply_xml
