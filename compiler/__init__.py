"""The flowplan compiler: a workflow repository in, validated and versioned plans out.

The public contract, the only modules `daemon/` may import:
- `flowplan.compiler.plan`: the plan format (models, digest, `load_plan`);
- `flowplan.compiler.store`: the plan store on disk (publish, list, load versions);
- `flowplan.compiler.templating`: the `${ ... }` template language, to render node fields;
- `flowplan.compiler.compile` and `flowplan.compiler.repo`: `compile_repo(read_repo(root))`,
  for commands
  that compile a working tree (`flowplan debug`, `flowplan up`, git hooks);
- `flowplan.compiler.git`: `publish_from_git`, for a daemon that follows a branch (`serve --git`);
- `flowplan.compiler.console`: terminal output for every command (colours, NO_COLOR, live views);
- `flowplan.compiler.report`: diagnostics and publish reports as `check` and `publish` print them;
- `flowplan.compiler.grammars`: the grammars both sides share -- e-mail addresses
  (`is_email_address`), duration flags (`duration_option`), `--param K=V` (`param_option`);
- `flowplan.compiler.files`: `FileLock`, the one file lock (plan store, git, the daemon's state).
Everything else is internal.
"""

__version__ = "0.1.0"
