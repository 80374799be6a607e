"""What the application reads at run time besides its code, shipped as package data.

``yieldmeter/share/`` holds symbolic links to the checkout's own folders (``dbt``, ``jobs``,
``infra``), so they keep one place in the repository. A wheel build copies what the links
point at (pyproject.toml, package-data); an editable install follows them. Everything is found
through importlib.resources from this package, never from a path to the checkout, so an
installed wheel works from any folder.

Nothing is written here: dbt's target/ and logs/, Flink's checkpoints and logs and the
warehouse live in the state folder (YIELDMETER_STATE_DIR), the jobs' compiled functions in
the temporary folder.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def share_path(*parts: str) -> Path:
    """The shipped file or folder ``parts`` (e.g. ``share_path("dbt")``) as a filesystem path:
    dbt, the Flink jobs and the Kafka broker need real files, and pip always installs a wheel
    unpacked, so the resource is a Path (a zipped install is not supported)."""
    found = files(__name__).joinpath(*parts)
    if not isinstance(found, Path):
        raise RuntimeError(f"yieldmeter must be installed unpacked, not zipped: {found} is not a file path")
    return found
