"""A local stand-in of a hospital information system's FHIR R4 server (aiohttp.web), for tests and demos.

The subset medwx uses: search (``GET /Patient?_count=N``) answering ``searchset`` Bundles with ``self``/``next``
links (paging by ``_offset``), read (``GET /Type/id``), create (``POST /Type``, 201 with ``Location``), update
(``PUT /Type/id``; writes stamp ``meta.versionId``, and an ``If-Match`` of an older version answers 412), ``Binary``
as FHIR JSON or raw bytes by the ``Accept`` header, OperationOutcome errors. It records every call; knobs let a test
make the next request to a path fail, and ``answer_appointment`` / ``notify`` play the hospital accepting or
declining a consultation request and calling back.

Run on its own for a demo (``python -m tests.his_standin --port 8701 --load bundle.json``): it prints its base URL
and serves the resources of the files given (Bundles or NDJSON) until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web

from tests.wechat_standin import serve_until_signalled

FHIR_JSON = "application/fhir+json"
SEARCHABLE = ("Patient", "Practitioner", "Encounter", "Organization", "Condition", "MedicationRequest",
              "Appointment", "Binary", "PractitionerRole", "Schedule", "Slot")
DEFAULT_COUNT = 50


class Call(NamedTuple):
    method: str
    path: str
    query: dict
    json: Any


def _outcome(status: int, code: str, text: str) -> web.Response:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
    return web.Response(status=status, text=json.dumps(body), content_type=FHIR_JSON)


def _rewrite_references(value: Any, local: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: (local.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite_references(v, local))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_references(v, local) for v in value]
    return value


class HISStandIn:
    def __init__(self, *, page_size: int = DEFAULT_COUNT):
        self.page_size = page_size
        self.resources: dict[str, dict[str, dict]] = {}  # type -> id -> resource
        self.calls: list[Call] = []
        self.base_url = ""
        self._ids = itertools.count(1)
        self._failures: dict[str, list[int]] = {}
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}/fhir"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._record], client_max_size=16 * 1024 * 1024)
        app.router.add_get("/fhir/metadata", self._metadata)
        app.router.add_get("/fhir/{type}", self._search)
        app.router.add_post("/fhir/{type}", self._create)
        app.router.add_get("/fhir/{type}/{id}", self._read)
        app.router.add_put("/fhir/{type}/{id}", self._update)
        return app

    # -- knobs -----------------------------------------------------------------------------------------------------
    def add(self, *resources: dict) -> None:
        """Serve these resources (a resource without an id gets one)."""
        for resource in resources:
            resource = dict(resource)
            resource.setdefault("id", f"s{next(self._ids)}")
            self.resources.setdefault(resource["resourceType"], {})[resource["id"]] = resource

    def add_binary(self, binary_id: str, data: bytes, content_type: str = "image/jpeg") -> None:
        self.add({"resourceType": "Binary", "id": binary_id, "contentType": content_type,
                  "data": base64.b64encode(data).decode()})

    def load(self, path: Path) -> int:
        """Serve the resources of a Bundle or NDJSON file; how many."""
        text = Path(path).read_text(encoding="utf-8")
        try:
            docs = [json.loads(text)]
        except ValueError:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        found, local = [], {}
        for doc in docs:
            if doc.get("resourceType") == "Bundle":
                for entry in doc.get("entry") or []:
                    if "resource" in entry:
                        found.append(entry["resource"])
                        if entry.get("fullUrl") and entry["resource"].get("id"):
                            local[entry["fullUrl"]] = f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
            else:
                found.append(doc)
        # As a server storing a batch does: bundle-local references (urn:uuid:…) become Type/id.
        self.add(*(_rewrite_references(r, local) for r in found))
        return len(found)

    def fail_next(self, path: str, status: int = 500, times: int = 1) -> None:
        """The next request(s) to ``path`` (e.g. ``/fhir/Patient``) answer an OperationOutcome with ``status``."""
        self._failures.setdefault(path, []).extend([status] * times)

    def answer_appointment(self, appointment_id: str, *, accept: bool = True, comment: str = "") -> dict:
        """The hospital decides on a proposed Appointment: ``booked`` with the practitioner ``accepted``, or
        ``cancelled`` with the practitioner ``declined`` (as a scheduler answering a request does)."""
        appointment = dict(self.resources["Appointment"][appointment_id])
        appointment["status"] = "booked" if accept else "cancelled"
        appointment["participant"] = [
            dict(p, status=("accepted" if accept else "declined"))
            if "Practitioner/" in str((p.get("actor") or {}).get("reference", "")) or p.get("status") == "needs-action"
            else p
            for p in appointment.get("participant") or []]
        if comment:
            appointment["comment"] = comment
        appointment = self._versioned(appointment)
        self.add(appointment)
        return appointment

    def _versioned(self, resource: dict) -> dict:
        """``resource`` with the next ``meta.versionId`` (a write, as a versioning FHIR server stamps it)."""
        before = self.resources.get(resource["resourceType"], {}).get(resource.get("id", ""))
        version = int(((before or {}).get("meta") or {}).get("versionId") or 0) + 1
        meta = dict(resource.get("meta") or {}, versionId=str(version),
                    lastUpdated=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        return dict(resource, meta=meta)

    async def notify(self, url: str, resource: dict, secret: str) -> tuple[int, Any]:
        """Push ``resource`` to a subscriber as a FHIR Subscription notification would: (status, answer JSON)."""
        import aiohttp

        bundle = {"resourceType": "Bundle", "type": "history",
                  "entry": [{"fullUrl": f"{self.base_url}/{resource['resourceType']}/{resource['id']}",
                             "resource": resource, "request": {"method": "PUT",
                                                               "url": f"{resource['resourceType']}/{resource['id']}"},
                             "response": {"status": "200"}}]}
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=bundle, headers={"Authorization": f"Bearer {secret}"}) as resp:
                return resp.status, await resp.json(content_type=None)

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    # -- handlers --------------------------------------------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler):
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        self.calls.append(Call(request.method, request.path, dict(request.query), parsed))
        if self._failures.get(request.path):
            return _outcome(self._failures[request.path].pop(0), "exception", "injected failure")
        return await handler(request)

    async def _metadata(self, request: web.Request) -> web.Response:
        body = {"resourceType": "CapabilityStatement", "status": "active", "fhirVersion": "4.0.1", "kind": "instance",
                "format": ["json"], "rest": [{"mode": "server", "resource": [
                    {"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}]}
                    for t in SEARCHABLE]}]}
        return web.Response(text=json.dumps(body), content_type=FHIR_JSON)

    def _page_url(self, request: web.Request, offset: int, count: int) -> str:
        query = {k: v for k, v in request.query.items() if k not in ("_offset", "_count")}
        query.update({"_count": str(count), "_offset": str(offset)})
        return str(request.url.with_query(query))

    async def _search(self, request: web.Request) -> web.Response:
        rtype = request.match_info["type"]
        if rtype not in SEARCHABLE:
            return _outcome(404, "not-supported", f"unknown resource type {rtype}")
        try:
            count = max(1, min(int(request.query.get("_count", self.page_size)), 1000))
            offset = max(0, int(request.query.get("_offset", 0)))
        except ValueError:
            return _outcome(400, "invalid", "_count and _offset are integers")
        matches = list(self.resources.get(rtype, {}).values())
        if "_id" in request.query:
            wanted = set(request.query["_id"].split(","))
            matches = [r for r in matches if r["id"] in wanted]
        page = matches[offset:offset + count]
        links = [{"relation": "self", "url": self._page_url(request, offset, count)}]
        if offset + count < len(matches):
            links.append({"relation": "next", "url": self._page_url(request, offset + count, count)})
        base = str(request.url.with_path("/fhir").with_query(None))
        body = {"resourceType": "Bundle", "type": "searchset", "total": len(matches), "link": links,
                "entry": [{"fullUrl": f"{base}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                          for r in page]}
        return web.Response(text=json.dumps(body, ensure_ascii=False), content_type=FHIR_JSON)

    async def _read(self, request: web.Request) -> web.Response:
        rtype, rid = request.match_info["type"], request.match_info["id"]
        resource = self.resources.get(rtype, {}).get(rid)
        if resource is None:
            return _outcome(404, "not-found", f"{rtype}/{rid} is not known")
        if rtype == "Binary" and FHIR_JSON not in request.headers.get("Accept", ""):
            return web.Response(body=base64.b64decode(resource.get("data", "")),
                                content_type=resource.get("contentType", "application/octet-stream"))
        return web.Response(text=json.dumps(resource, ensure_ascii=False), content_type=FHIR_JSON)

    async def _create(self, request: web.Request) -> web.Response:
        rtype = request.match_info["type"]
        try:
            resource = await request.json()
        except ValueError:
            return _outcome(400, "invalid", "the body is not JSON")
        if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
            return _outcome(400, "invalid", f"the body is not a {rtype}")
        resource = self._versioned(dict(resource, id=f"c{next(self._ids)}"))
        self.add(resource)
        location = str(request.url.with_path(f"/fhir/{rtype}/{resource['id']}").with_query(None))
        return web.Response(status=201, text=json.dumps(resource, ensure_ascii=False), content_type=FHIR_JSON,
                            headers={"Location": location})


    async def _update(self, request: web.Request) -> web.Response:
        """``PUT /Type/id``: replace a stored resource (a demo accepts a request by PUTting it back booked)."""
        rtype, rid = request.match_info["type"], request.match_info["id"]
        try:
            resource = await request.json()
        except ValueError:
            return _outcome(400, "invalid", "the body is not JSON")
        if not isinstance(resource, dict) or resource.get("resourceType") != rtype or resource.get("id") != rid:
            return _outcome(400, "invalid", f"the body is not {rtype}/{rid}")
        stored = self.resources.get(rtype, {}).get(rid)
        known = stored is not None
        match = request.headers.get("If-Match")
        if match and known and match != f'W/"{(stored.get("meta") or {}).get("versionId")}"':
            return _outcome(412, "conflict", f"{rtype}/{rid} has changed since version {match}")
        resource = self._versioned(resource)
        self.add(resource)
        return web.Response(status=200 if known else 201, text=json.dumps(resource, ensure_ascii=False),
                            content_type=FHIR_JSON)


# -- command line ----------------------------------------------------------------------------------------------------
def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.his_standin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--page-size", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--load", nargs="*", default=[], help="Bundle or NDJSON files whose resources to serve")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    standin = HISStandIn(page_size=args.page_size)
    for path in args.load:
        standin.load(Path(path))
    await serve_until_signalled(standin, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
