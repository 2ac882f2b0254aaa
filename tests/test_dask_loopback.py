"""The LocalCluster a night starts listens on loopback only: scheduler, nannies, workers and the
scheduler's HTTP server (the dashboard)."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest


def listening_addresses() -> list[str]:
    """host:port of every TCP socket this process listens on (from /proc)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                host, port = fields[1].split(":")
                shown = (socket.inet_ntoa(bytes.fromhex(host)[::-1]) if len(host) == 8
                         else f"[{host}]")
                found.append(f"{shown}:{int(port, 16)}")
    return found


def test_local_cluster_scheduler_nannies_workers_and_dashboard_listen_on_loopback():
    from ccdflow.pipeline.executor import DaskExecutor

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("no /proc to list this process's sockets")
    with DaskExecutor(workers=1) as executor:
        info = executor.client.scheduler_info()
        workers = list(info["workers"])
        assert workers and all(a.startswith("tcp://127.0.0.1:") for a in workers), workers
        listening = listening_addresses()  # scheduler, its HTTP server, nanny: this process
        assert f"127.0.0.1:{info['services']['dashboard']}" in listening
        assert len(listening) >= 3 and all(a.startswith("127.0.0.1:") for a in listening), listening
