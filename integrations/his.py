"""Async client of the hospital information system's FHIR R4 REST API (aiohttp).

``search`` walks a searchset page by page through its ``next`` links, yielding resources as they come (a big
export never sits in memory whole). ``next`` links are followed only on the server's own origin and never twice, so a
misconfigured or hostile server cannot send the client elsewhere or round in circles.

Every failure becomes ``UpstreamError`` (Chinese message for people, details for logs): network errors, timeouts,
non-2xx answers (with the OperationOutcome's diagnostics when there is one), answers that are not FHIR JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any, AsyncIterator
from urllib.parse import urljoin, urlsplit

import aiohttp

from core.errors import UpstreamError

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
MAX_BINARY = 10 * 1024 * 1024  # a patient photo is far smaller; anything larger is refused
MAX_PAGES = 100_000


def _outcome_text(body: Any) -> str:
    """The diagnostics of an OperationOutcome, when the error answer carries one."""
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        parts = [i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code", "")
                 for i in body.get("issue") or [] if isinstance(i, dict)]
        return "; ".join(p for p in parts if p)
    return ""


class HISClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession | None = None, *, timeout: float = 30.0):
        if not base_url:
            raise ValueError("HIS_BASE_URL is not set")
        self.base_url = base_url.rstrip("/") + "/"
        self._origin = urlsplit(self.base_url)[:2]
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> "HISClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def url(self, path: str) -> str:
        """An absolute URL for a path relative to the base (``Patient/1``) or an absolute one left as is."""
        return urljoin(self.base_url, path)

    def _same_origin(self, url: str) -> bool:
        return urlsplit(url)[:2] == self._origin

    async def _request(self, method: str, url: str, *, params: dict | None = None, json_body: Any = None,
                       accept: str = FHIR_JSON, raw: bool = False,
                       headers: dict | None = None) -> tuple[int, Any]:
        headers = {"Accept": accept, **(headers or {})}
        if json_body is not None:
            headers["Content-Type"] = FHIR_JSON
        path = urlsplit(url).path
        try:
            async with self._http().request(method, url, params=params, headers=headers,
                                            data=json.dumps(json_body) if json_body is not None else None,
                                            timeout=self._timeout) as resp:
                if raw and resp.status < 300:
                    data = bytearray()
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        data += chunk
                        if len(data) > MAX_BINARY:
                            raise UpstreamError("医院信息系统返回的文件过大", details={"url": path})
                    return resp.status, (resp.headers.get("Content-Type", ""), bytes(data))
                text = await resp.text()
                status = resp.status
        except TimeoutError:
            raise UpstreamError("医院信息系统响应超时", status=504, details={"url": path}) from None
        except aiohttp.ClientError as exc:
            log.warning("HIS %s %s failed: %s", method, path, exc)
            raise UpstreamError("无法连接医院信息系统", details={"url": path}) from None
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        if status >= 400:
            reason = _outcome_text(body) or text[:200]
            log.warning("HIS %s %s answered %s: %s", method, path, status, reason)
            raise UpstreamError(f"医院信息系统返回错误（{status}）",
                                details={"url": path, "status": status, "reason": reason})
        if text and body is None:
            raise UpstreamError("医院信息系统返回了无法识别的内容", details={"url": path, "status": status})
        return status, body

    # -- the FHIR interactions medwx uses ---------------------------------------------------------------------------
    async def pages(self, resource_type: str, params: dict | None = None) -> AsyncIterator[dict]:
        """Each searchset Bundle, the first from ``GET [base]/Type?params``, the rest from ``next`` links."""
        url, query = self.url(resource_type), dict(params or {})
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            _, bundle = await self._request("GET", url, params=query)
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise UpstreamError("医院信息系统的搜索结果不是 Bundle", details={"url": urlsplit(url).path})
            yield bundle
            nxt = next((link.get("url") for link in bundle.get("link") or []
                        if isinstance(link, dict) and link.get("relation") == "next"), None)
            if not nxt:
                return
            nxt = self.url(nxt)
            if not self._same_origin(nxt) or nxt in seen:
                raise UpstreamError("医院信息系统的翻页链接无效", details={"next": nxt})
            seen.add(nxt)
            url, query = nxt, None  # the next link carries its own query
        raise UpstreamError("医院信息系统的搜索结果页数过多")

    async def search(self, resource_type: str, params: dict | None = None) -> AsyncIterator[dict]:
        """Every resource of a search (``search`` mode entries only: included resources are left out), page by page."""
        async for bundle in self.pages(resource_type, params):
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                mode = (entry.get("search") or {}).get("mode", "match") if isinstance(entry, dict) else "match"
                if isinstance(resource, dict) and mode == "match":
                    yield resource

    async def read(self, resource_type: str, resource_id: str) -> dict:
        _, body = await self._request("GET", self.url(f"{resource_type}/{resource_id}"))
        if not isinstance(body, dict) or body.get("resourceType") != resource_type:
            raise UpstreamError("医院信息系统返回的资源类型不符", details={"expected": resource_type})
        return body

    async def create(self, resource_type: str, resource: dict) -> dict:
        """``POST [base]/Type``; the stored resource as the server returns it (with its new id)."""
        _, body = await self._request("POST", self.url(resource_type), json_body=resource)
        if not isinstance(body, dict):
            raise UpstreamError("医院信息系统未返回创建的资源")
        return body

    async def update(self, resource: dict) -> dict:
        """``PUT [base]/Type/id`` of a resource read before; with its ``meta.versionId`` as ``If-Match``, so a change
        the HIS made meanwhile is not overwritten (the server answers 412 and the caller reads it again)."""
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if not rtype or not rid:
            raise ValueError("update needs a resource with resourceType and id")
        version = (resource.get("meta") or {}).get("versionId")
        headers = {"If-Match": f'W/"{version}"'} if version else None
        _, body = await self._request("PUT", self.url(f"{rtype}/{rid}"), json_body=resource, headers=headers)
        if not isinstance(body, dict):  # a server may answer 200 with no body (Prefer: return=minimal)
            return resource
        return body

    async def fetch_binary(self, url: str) -> bytes:
        """The bytes an Attachment URL points to: a ``Binary`` on this server (relative or absolute), as FHIR JSON
        with base64 ``data`` or as raw content. Other hosts are not fetched (the import stays inside the network
        the HIS lives in)."""
        absolute = self.url(url)
        if not self._same_origin(absolute):
            raise UpstreamError("照片地址不在医院信息系统内", details={"url": url})
        _, (content_type, data) = await self._request("GET", absolute, accept=f"{FHIR_JSON}, */*", raw=True)
        if content_type.split(";")[0].strip() in (FHIR_JSON, "application/json"):
            try:
                body = json.loads(data)
                return base64.b64decode(body["data"], validate=True)
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise UpstreamError("医院信息系统返回的 Binary 无法读取", details={"url": url}) from None
        return data
