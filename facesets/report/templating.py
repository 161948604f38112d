"""The report's one way to make HTML: Jinja2 templates (templates/, shipped as package data) with
autoescaping on for every template, so a value from the user's files (a file name, a reason, a label)
always reaches the page as text. No caller builds HTML strings; structured table cells are `Cell`s.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

import jinja2

from facesets import __version__


@dataclass(frozen=True)
class Cell:
    """A table cell that is more than text: a link, a styled result, or a thumbnail before the text."""

    text: object
    href: str | None = None  # a relative page name; percent-encoded when rendered
    cls: str | None = None
    img: str | None = None  # a data URI


def url(path: object) -> str:
    """A relative link to a file named by the user's data: percent-encoded, so it is never a scheme or
    markup; a name's undecodable bytes (lone surrogates) become their own %XX."""
    return quote(str(path), safe="/", errors="surrogateescape")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("facesets.report", "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["url"] = url
    env.tests["cell"] = lambda v: isinstance(v, Cell)
    env.globals["version"] = __version__
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)
