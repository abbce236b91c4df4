"""The console, mounted on the daemon's HTTP listener (http.py)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from aiohttp import web

from flowplan.daemon.server.console.access import Access
from flowplan.daemon.server.console.backfills import BackfillPages
from flowplan.daemon.server.console.guide import GuidePages
from flowplan.daemon.server.console.kit import Kit
from flowplan.daemon.server.console.layouter import Computer, Layouter
from flowplan.daemon.server.console.layouts import LAYOUTS_DIR, LayoutPages, Layouts
from flowplan.daemon.server.console.multiplex import Multiplex
from flowplan.daemon.server.console.runs import RunPages
from flowplan.daemon.server.console.sessions import SESSIONS_FILE, Sessions, Tokens
from flowplan.daemon.server.console.workflows import WorkflowPages
from flowplan.daemon.server.service import WorkflowService


class Console:
    """The console's pages over `service`; `tokens` judge a login's token (None: no tokens
    configured, no login); `https`: cookies are `Secure`; `state`: the state directory,
    where logged-in sessions and large graphs' layouts are kept (None: in memory);
    `computer` lays out large graphs in the daemon (layouter.py; None: browsers do)."""

    def __init__(self, service: WorkflowService, tokens: Tokens | None, *, https: bool,
                 state: Path | None = None, computer: Computer | None = None) -> None:
        self.sessions = Sessions(tokens, state / SESSIONS_FILE if state else None)
        self._kit = kit = Kit(service, self.sessions, https=https)
        self._layouter = layouter = Layouter(Layouts(state / LAYOUTS_DIR if state else None),
                                             computer)
        runs, backfills = RunPages(kit, layouter), BackfillPages(kit)
        self._parts = (Access(kit), WorkflowPages(kit, layouter), runs, backfills,
                       Multiplex([runs.stream, backfills.stream]), GuidePages(kit),
                       LayoutPages(kit, layouter.layouts, layouter.wait,
                                   layouter.takes_posts))

    def mount(self, app: web.Application) -> None:
        for part in self._parts:  # Access first: its middleware guards every route
            part.mount(app)
        app.router.add_static("/static", self._kit.assets.folder)

    def start(self) -> None:
        """The daemon serves: lay out the large graphs of the workflows' latest versions
        that have no layout yet (in the event loop's background)."""
        self._layouter.start(self._kit)

    def plans_loaded(self, versions: Iterable[tuple[str, int]]) -> None:
        """The daemon loaded these (workflow, version)s: lay out their large graphs."""
        self._layouter.plans_loaded(self._kit, versions)

    def close(self) -> None:
        """Closes the sessions' file and stops laying out (the daemon stops)."""
        self.sessions.close()
        self._layouter.close()
