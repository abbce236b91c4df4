"""The console's static files (`/static/…`: scripts, the style sheet, the icon), named in
pages with their content's hash (`/static/graph.js?v=3f2a…`), so a browser keeps them for a
year and fetches again only what a new release changed: d3-dag alone is 143 KB to fetch and
compile on every view otherwise. A URL without the current hash is revalidated instead
(`no-cache`: aiohttp answers 304 when the file has not changed)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from aiohttp import web

STATIC_PREFIX: Final = "/static/"
KEPT: Final = "public, max-age=31536000, immutable"
REVALIDATED: Final = "no-cache"


class Assets:
    """The static files of `folder`, and their content hashes as read at start."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._versions = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:16]
                          for path in sorted(folder.iterdir()) if path.is_file()}

    def url(self, name: str) -> str:
        """The URL a page names the file `name` by (a template naming a missing file fails
        to render, so a test of the page catches it)."""
        version = self._versions.get(name)
        if version is None:
            raise LookupError(f"no static file '{name}' in {self.folder}")
        return f"{STATIC_PREFIX}{name}?v={version}"

    def cache_control(self, request: web.Request) -> str:
        """How long a browser may keep this answer to a /static/ request."""
        name = request.path.removeprefix(STATIC_PREFIX)
        version = self._versions.get(name)
        return KEPT if version is not None and request.query.get("v") == version \
            else REVALIDATED
