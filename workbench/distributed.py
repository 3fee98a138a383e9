"""The workbench on a Dask cluster (the optional ``distributed`` extra: ``pip install 'token-workbench[distributed]'``).

Everything runs on one machine without it; with it, corpus-scale work goes to Dask workers: `train_bpe(...,
client=...)` counts the corpus's words on the workers (see `workbench.tokenization.dask_count`). This module finds
or starts the client and turns Dask's failures into one-line `DistributedError` messages.

Example::

    client = connect(workers=2)              # a LocalCluster of 2 single-threaded worker processes on loopback
    client = connect("tcp://10.0.0.5:8786")  # or an existing scheduler
    dashboard_link(client)                   # 'http://127.0.0.1:8787/status'
"""

from __future__ import annotations

from workbench.errors import DistributedError

EXTRA_HINT = "install the extra: pip install 'token-workbench[distributed]' (Dask's dask[distributed])"


def require_distributed():
    """The ``distributed`` module, or a `DistributedError` that names the extra to install."""
    try:
        import distributed
    except ImportError as exc:
        raise DistributedError(f"Dask's distributed scheduler is not installed; {EXTRA_HINT}.") from exc
    return distributed


def connect(address: str | None = None, *, workers: int | None = None, timeout: float = 5.0):
    """A Dask ``Client``: to the scheduler at ``address``, or to a new ``LocalCluster`` of ``workers`` single-threaded
    worker processes listening on loopback only. An unreachable address is a one-line `DistributedError`."""
    distributed = require_distributed()
    if (address is None) == (workers is None):
        raise DistributedError("give either a scheduler address or a number of local workers, not both or neither")
    if address is not None:
        try:
            return distributed.Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise DistributedError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    if int(workers) < 1:
        raise DistributedError(f"a local cluster needs at least 1 worker, got {workers}")
    import logging

    try:  # the client starts (and on close() stops) its own LocalCluster
        return distributed.Client(n_workers=int(workers), threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    except (OSError, TimeoutError, RuntimeError) as exc:
        raise DistributedError(f"could not start a local Dask cluster of {workers} workers: {exc}") from None


def current_client():
    """The process's default Dask client (the last one created, e.g. by `connect` or ``workbench serve
    --workers N``), or None when there is none or the extra is not installed."""
    try:
        import distributed
    except ImportError:
        return None
    try:
        return distributed.Client.current(allow_global=True)
    except ValueError:
        return None


def cluster_summary(client) -> str:
    """One line for a user: how many workers, and where the Dask dashboard is."""
    workers = len(client.scheduler_info().get("workers", {}))
    link = dashboard_link(client)
    return f"Dask cluster: {workers} worker{'s' if workers != 1 else ''}" + (f", dashboard {link}" if link else "")


def dashboard_link(client) -> str | None:
    """The URL of the cluster's Dask dashboard (a Bokeh app of its own), or None when it has none."""
    return getattr(client, "dashboard_link", None) or None


def missing_on_workers(client, paths) -> list[str]:
    """The paths (as strings) that some worker cannot read: a cluster's workers may not share the client's disk."""
    checked = client.run(_unreadable, [str(p) for p in paths])
    return sorted({p for found in checked.values() for p in found})


def check_readable(client, paths) -> None:
    """A `DistributedError` naming the paths some worker of ``client`` cannot read, before any work is sent."""
    missing = missing_on_workers(client, paths)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DistributedError(f"the Dask workers cannot read {shown}: a cluster's workers must see the corpus "
                               "files at the same paths as the client (a shared file system)")


def _unreadable(paths: list[str]) -> list[str]:
    import os

    return [p for p in paths if not os.access(p, os.R_OK)]
