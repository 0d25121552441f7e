"""Headers every response carries, so a browser holds the page to our rules.

The Content-Security-Policy allows scripts only from our own origin (no
inline script, no eval): even if some text slipped through escaping, a
browser would not run it. ``frame-ancestors 'none'`` (and the older
``X-Frame-Options``) stops clickjacking, ``nosniff`` stops a JSON answer
being run as script, and the referrer never leaves the site.
"""

from __future__ import annotations

from quart import Quart, Response

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# The same, as raw ASGI header pairs for the paths answered in front of Quart.
ASGI_HEADERS = [(name.lower().encode(), value.encode()) for name, value in HEADERS.items()]


async def add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Quart) -> None:
    app.after_request(add_headers)
