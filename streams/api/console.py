"""GET /console: a small web console over the incident API (plain HTML, CSS and one script; no build step).

The page holds no data of its own: the script calls GET /whoami, /incidents, /incidents/{id} and
POST /actions/{id}/approve|reject with the token the user pasted (kept in the tab's sessionStorage), and
polls every 3 s for live updates. Served with a strict Content-Security-Policy (only our own script and
style, no inline code, no framing), and the script writes every API value as text, never as HTML:
mail bodies, labels and LLM output are untrusted.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

_FILES = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return resources.files("streams.api").joinpath("console", name).read_bytes()


def build_console_router() -> APIRouter:
    """The console's page and its two static files (a fixed list: no path from the request reaches the disk)."""
    router = APIRouter(tags=["console"], include_in_schema=False)
    page = _read("index.html")
    files = {name: _read(name) for name in _FILES}

    @router.get("/console")
    async def console() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_HEADERS)

    @router.get("/console/static/{name}")
    async def static(name: str) -> Response:
        if name not in files:
            raise HTTPException(404, "no such console file")
        return Response(files[name], media_type=_FILES[name], headers=_HEADERS)

    return router
