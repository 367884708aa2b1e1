"""The dashboard at ``/dashboard``: server-rendered Jinja2 and a little plain JavaScript.

The page shows the overview of :meth:`jobservice.api.Api.overview` (counts per status, per-task
figures, running jobs with progress bars, failed jobs with their error and a retry button,
schedules with their next run) and keeps it current over ``GET /api/events``: a job event
updates its row at once (progress bars move), and the figures are re-read at most every
second while events arrive. With ``JOBS_API_TOKEN`` set, ``/dashboard/login`` takes the token
and keeps it in an HttpOnly, SameSite=Strict cookie.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2
import markupsafe
from aiohttp import web

from jobservice import apiauth
from jobservice.api import Api, dumps
from jobservice.render import relative, seconds

STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def environment() -> jinja2.Environment:
    """The Jinja2 environment of the packaged templates (HTML autoescaped)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("jobservice", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["relative"] = relative
    env.filters["seconds"] = seconds
    env.filters["tojson_safe"] = lambda value: markupsafe.Markup(
        dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )
    return env


def same_origin(request: web.Request) -> bool:
    """Does this POST come from the dashboard's own pages (see :func:`apiauth.same_origin`)?"""
    return apiauth.same_origin(
        request.headers.get("Origin"),
        request.headers.get("Host"),
        request.headers.get("Sec-Fetch-Site"),
    )


class Dashboard:
    """The dashboard's routes over an :class:`~jobservice.api.Api`."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.env = environment()

    def routes(self) -> list[web.RouteDef]:
        """The route table to add to an aiohttp application."""
        return [
            web.get("/dashboard", self.page),
            web.get("/dashboard/", self.page),
            web.get("/dashboard/login", self.login_form),
            web.post("/dashboard/login", self.login),
            web.post("/dashboard/logout", self.logout),
            web.get("/dashboard/static/{name}", self.static),
        ]

    def html(self, template: str, status: int = 200, **context: Any) -> web.Response:
        body = self.env.get_template(template).render(**context)
        return web.Response(
            text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS
        )

    async def page(self, request: web.Request) -> web.StreamResponse:
        if not self.api.allowed(request):
            if self.api.token is None:
                return web.Response(status=403, text="the dashboard answers loopback names only")
            raise web.HTTPSeeOther("/dashboard/login")
        overview = await self.api.overview()
        return self.html("dashboard.html", o=overview, signed_in=self.api.token is not None)

    async def login_form(self, request: web.Request) -> web.Response:
        return self.html("login.html", error=None)

    async def login(self, request: web.Request) -> web.StreamResponse:
        if not same_origin(request):
            return web.Response(status=403, text="cross-origin request refused")
        form = await request.post()
        given = form.get("token")
        token = self.api.token
        if token is None:
            raise web.HTTPSeeOther("/dashboard")
        if not isinstance(given, str) or not apiauth.token_matches(given, token):
            return self.html("login.html", status=401, error="wrong token")
        response = web.HTTPSeeOther("/dashboard")
        response.set_cookie(
            apiauth.COOKIE,
            given.strip(),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        if not same_origin(request):
            return web.Response(status=403, text="cross-origin request refused")
        response = web.HTTPSeeOther("/dashboard/login")
        response.del_cookie(apiauth.COOKIE, path="/")
        raise response

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        body = resources.files("jobservice").joinpath("static", name).read_bytes()
        return web.Response(
            body=body,
            content_type=STATIC[name],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )
