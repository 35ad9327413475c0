"""Where the examples run: this machine (default), or Dask with one switch.

    python examples/collate.py                      # nestpool's own worker processes
    python examples/collate.py --dask               # a LocalCluster started here
    python examples/collate.py --scheduler tcp://127.0.0.1:8786   # a running cluster

``pool_options()`` returns the keyword arguments for ``Pool``: none by default
(so ``Pool(**pool_options())`` is ``Pool()``), or ``client=`` for Dask (needs
``pip install 'nestpool[dask]'``). The client and any cluster started here are
closed when the program exits.
"""

from __future__ import annotations

import argparse
import atexit
from typing import Any


def pool_options(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``--dask`` / ``--scheduler ADDRESS``; return ``Pool``'s keyword arguments."""
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dask", action="store_true", help="run on a local Dask cluster")
    where.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")
    args = parser.parse_args(argv)
    if not args.dask and args.scheduler is None:
        return {}
    from distributed import Client, LocalCluster

    if args.dask:
        cluster = LocalCluster(n_workers=2, threads_per_worker=2, dashboard_address=":0")
        client = Client(cluster)
        atexit.register(cluster.close)
    else:
        client = Client(args.scheduler)
    atexit.register(client.close)  # runs first: the client before its cluster
    return {"client": client}
