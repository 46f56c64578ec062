"""Free ports on 127.0.0.1 for what the tests and drills start: a flow's cluster
(``FLOW_BASE_PORT`` and the next ``processes - 1`` ports), a metrics, review or database server.

Ports are drawn at random below the kernel's ephemeral range, where the clients' own connections
take theirs, and checked free by binding each. Ports derived from the pid met a service
(``3300 + pid % 200`` is MariaDB's 3306 for one pid in a hundred), and fixed ones a concurrent run
of the same test; a port the kernel gave for ``bind(0)`` can be taken by an outgoing connection
before the server that was meant to have it binds it.

>>> base = free_ports(2)
>>> 10_000 <= base < ephemeral_ports()[0]
True
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 10_000  # above the services' own (MariaDB 3306, Kafka 9092-9094, private 3322, 9292)


def free_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive ports of 127.0.0.1 that nothing is bound to now."""
    low = ephemeral_ports()[0]
    draw = random.SystemRandom()  # tests and hypothesis seed the module's generator
    for _ in range(1_000):
        base = draw.randrange(LOWEST, low - count)
        if not ports_taken(base, count, reuse=False):
            return base
    raise RuntimeError(f"no {count} consecutive free ports of 127.0.0.1 in [{LOWEST}, {low})")


def ports_taken(base: int, count: int, *, reuse: bool = True) -> list[str]:
    """Which of the ``count`` ports from ``base`` on 127.0.0.1 cannot be bound now, each with the
    reason. ``reuse``: bound as a flow's processes bind theirs, with ``SO_REUSEADDR`` (a
    connection of an earlier run waiting in ``TIME_WAIT`` does not hold its port); without it,
    as :func:`free_ports` picks fresh ones (stops at the first taken)."""
    taken = []
    for port in range(base, base + count):
        with socket.socket() as s:
            if reuse:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                taken.append(f"{port} ({e.strerror})")
                if not reuse:
                    break
    return taken


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default if unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999
