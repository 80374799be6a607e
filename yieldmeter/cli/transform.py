"""`yieldmeter transform` (dbt build on the warehouse) and `yieldmeter docs` (the dbt docs site)."""

from __future__ import annotations

import typer

from yieldmeter.cli.output import console, settings
from yieldmeter.transform import DbtRun, TransformError, docs_server, generate_docs, transform as run_transform
from yieldmeter.warehouse import redact

CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}


def _summary(run: DbtRun) -> None:
    counts = run.counts()
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "done"
    mark = "[green]✓[/green]" if run.success else "[red]✗[/red]"
    console.print(f"{mark} dbt {' '.join(run.args)}: {parts} in {run.seconds:.1f}s")
    for failure in run.failures():
        console.print(f"  [red]{failure.splitlines()[0]}[/red]")


def transform(ctx: typer.Context) -> None:
    """Build and test every dbt model on the warehouse (dbt build).

    Other arguments go to dbt: `yieldmeter transform --select marts`, `--vars '{as_of: ...}'`.
    A dbt command first runs that command instead: `yieldmeter transform source freshness`.
    A build of a warehouse that another version of the dbt project built (yieldmeter upgraded,
    a model edited) rebuilds every model it selects from scratch (--full-refresh).
    The embedded warehouse runs dbt in this process; a server URL uses dbt/profiles.yml's
    server target.
    """
    config = settings()
    console.print(f"dbt on {redact(config.warehouse_url)}")
    run = run_transform(config, ctx.args)
    if run.full_rebuild:
        console.print(f"every model rebuilt from scratch (--full-refresh): {run.full_rebuild}")
    _summary(run)
    if not run.success:
        raise typer.Exit(1)


def docs(
    ctx: typer.Context,
    serve: bool = typer.Option(False, "--serve", help="Serve the site on localhost after generating it (Ctrl-C stops)."),
    port: int = typer.Option(8580, "--port", help="Port for --serve (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address for --serve; the default keeps it on this machine."),
) -> None:
    """Generate the dbt docs site (every model, column, test and exposure; the lineage graph).

    Other arguments go to `dbt docs generate`. The site is written to <state>/dbt/target.
    """
    config = settings()
    run = generate_docs(config, ctx.args)
    _summary(run)
    if not run.success:
        raise typer.Exit(1)
    console.print(f"site: {run.target_path / 'index.html'}")
    if not serve:
        return
    server = docs_server(run.target_path, port=port, host=host)
    console.print(f"serving on http://{host}:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


__all__ = ["docs", "transform", "TransformError"]
