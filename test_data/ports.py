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
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise RuntimeError(f"no {count} consecutive free ports of 127.0.0.1 in [{LOWEST}, {low})")


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux's default if unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999
