"""`yieldmeter flink run JOB`: run a job from jobs/ on the local Flink mini-cluster."""

from __future__ import annotations

import typer

from yieldmeter.cli.output import console, settings
from yieldmeter.flink import start_job

app = typer.Typer(help="Run the PyFlink jobs locally.", no_args_is_help=True)


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    job: str = typer.Argument(..., help="Job file name in jobs/, without .py"),
    continuous: bool = typer.Option(False, "--continuous", help="Run until Ctrl-C instead of to the end offsets."),
) -> None:
    """Run a job; extra options (e.g. --source-topic t) are passed to the job file."""
    extra = dict(zip((a.lstrip("-") for a in ctx.args[::2]), ctx.args[1::2]))
    started = start_job(job, settings(), continuous=continuous, **extra)
    console.print(f"Job {job} started (pid {started.process.pid}); log: {started.log}")
    try:
        started.wait()
    except KeyboardInterrupt:
        started.stop()
        console.print(f"Job {job} stopped.")
        return
    console.print(f"[green]Job {job} finished.[/green]")
