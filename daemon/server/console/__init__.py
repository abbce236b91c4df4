"""The web console (`--http`): server-rendered pages over the same WorkflowService the gRPC
clients call, in process. Every read and action goes through the service's method (its
checks, its masking of secret values, its errors), so the console can show nothing and do
nothing the API would not.

One module per job:
- `access.py`: who may come in: login, sessions' cookies, CSRF on every POST, the security
  headers (a strict Content-Security-Policy) on every answer;
- `sessions.py`: the sessions behind the cookies, kept in the state directory across
  restarts (`console-sessions.sqlite`, with tokens only);
- `kit.py`: what every page uses: calling the service, rendering a page, the role an action
  needs (`auth.least_role` of the RPC it calls: a viewer gets 403 and sees no buttons);
- `workflows.py`, `runs.py`, `backfills.py`: the pages and actions, by what they show
  (`backfills.py` with its pages' live updates: one reader per backfill watched);
- `guide.py`: the getting-started walk, with links into this daemon's pages;
- `feeds.py`: the live updates (server-sent events) that run pages follow;
- `layouts.py`: large graphs' layouts, checked and kept (`console-layouts/` in the state
  directory) for every view; `layouter.py`: the daemon computing them (d3-dag in an embedded
  V8) as soon as it loads a plan version, else the first browser does;
- `diff.py`: what changed between two plan versions of a workflow (its diff page);
- `present.py`: how values are shown (statuses, times, schedules, graphs).
"""

from flowplan.daemon.server.console.app import Console

__all__ = ["Console"]
