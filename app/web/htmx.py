"""htmx on the server: its request headers parsed once, and its response headers by name.

``htmx_request()`` reads the ``HX-*`` headers of the current request into a
small typed object (django-htmx's ``HtmxDetails`` is the model), so a route
or the error renderer asks ``htmx_request().active`` rather than comparing
header strings. The response helpers name the headers htmx acts on.
"""

from __future__ import annotations

from dataclasses import dataclass

from quart import request


@dataclass(frozen=True, slots=True)
class HtmxRequest:
    active: bool  # HX-Request: the request comes from htmx
    boosted: bool  # HX-Boosted: a boosted link or form
    target: str | None  # HX-Target: the id of the element that will be swapped
    trigger: str | None  # HX-Trigger: the id of the element that triggered it
    current_url: str | None  # HX-Current-URL: the page it was made from


def htmx_request() -> HtmxRequest:
    headers = request.headers
    return HtmxRequest(
        active=headers.get("HX-Request") == "true",
        boosted=headers.get("HX-Boosted") == "true",
        target=headers.get("HX-Target") or None,
        trigger=headers.get("HX-Trigger") or None,
        current_url=headers.get("HX-Current-URL") or None,
    )


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


# Response headers htmx acts on.
def redirect_headers(location: str) -> dict[str, str]:
    """A full-page navigation (e.g. to the login page) instead of a swap."""
    return {"HX-Redirect": location}


def reswap_headers(strategy: str, target: str | None = None) -> dict[str, str]:
    """Swap this (error) response after all, how and where the server says."""
    headers = {"HX-Reswap": strategy}
    if target is not None:
        headers["HX-Retarget"] = target
    return headers
