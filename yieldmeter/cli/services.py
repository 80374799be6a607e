"""`yieldmeter up | down | status | topics`: the local Kafka broker and the topics."""

from __future__ import annotations

from rich.table import Table

from yieldmeter.cli.output import console, settings
from yieldmeter.config import ENV_PREFIX
from yieldmeter.kafka_local import LocalKafka
from yieldmeter.topics import ensure_topics
from yieldmeter.warehouse import WarehouseBusy, applied_migrations, embedded_path, open_warehouse, redact


def up() -> None:
    """Start the local Kafka broker (KRaft) and create the topics."""
    config = settings()
    if not config.uses_local_kafka:
        console.print(f"Using the brokers at {config.bootstrap_servers} ({ENV_PREFIX}KAFKA_BOOTSTRAP); "
                      "no local broker started.")
    else:
        broker = LocalKafka(config)
        if (pid := broker.pid()) is not None:
            console.print(f"Kafka is already up on {config.bootstrap_servers} (pid {pid}).")
        else:
            with console.status(f"Starting Kafka on {config.bootstrap_servers}…"):
                status = broker.start()
            console.print(f"[green]Kafka is up[/green] on {status.bootstrap} (pid {status.pid}); "
                          f"data and logs in {status.home}.")
    created = ensure_topics(config)
    if created:
        console.print(f"Created topics: {', '.join(created)}")


def down() -> None:
    """Stop the local Kafka broker that `up` started (and nothing else)."""
    config = settings()
    if LocalKafka(config).stop():
        console.print("Kafka stopped.")
    else:
        console.print("Kafka was not running (nothing of ours to stop).")


def status() -> None:
    """Show what runs and where: broker, warehouse, Flink environment."""
    config = settings()
    table = Table(show_header=True, header_style="bold")
    table.add_column("part")
    table.add_column("state")
    table.add_column("where")

    if config.uses_local_kafka:
        broker = LocalKafka(config).status()
        state = f"[green]up[/green] (pid {broker.pid})" if broker.running else "[yellow]down[/yellow]"
        table.add_row("kafka (local)", state, f"{broker.bootstrap} · {broker.home}")
    else:
        table.add_row("kafka (external)", "configured", config.bootstrap_servers)

    url = config.warehouse_url
    folder = embedded_path(url)
    try:
        if folder is not None and not folder.exists():
            raise FileNotFoundError("not created yet (`yieldmeter migrate` creates it)")
        with open_warehouse(url) as client:
            state = f"[green]ok[/green], {len(applied_migrations(client))} migrations applied"
    except WarehouseBusy as busy:
        state = f"[yellow]busy[/yellow]: held by pid {busy.pid}"
    except Exception as error:  # status reports, it does not fail
        state = f"[yellow]not available[/yellow]: {error}"
    table.add_row("warehouse", state, redact(url))

    python = config.flink_python_path
    table.add_row("flink env", "[green]ok[/green]" if python.exists() else "[red]missing[/red] (make setup)",
                  str(python))
    console.print(table)


def topics() -> None:
    """Create the pipeline topics (from infra/topics.yaml) that do not exist yet."""
    config = settings()
    created = ensure_topics(config)
    console.print(f"Created: {', '.join(created)}" if created else "All topics exist.")
