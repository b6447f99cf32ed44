#!/usr/bin/python3
"""Mininet's side of bench/labs.sh: bring up one lab shape with Mininet's
Python API (Linux-bridge switches, no controller), time it, measure its
memory, bring it down, and print one JSON line.

Usage: mininet_lab.py star|linear|ring N

- star N:   N hosts on one switch (Mininet's `single,N`).
- linear N: N switches in a chain, one host on each (`linear,N`).
- ring N:   N routers (hosts with ip_forward) in a ring of point-to-point
            links, no switch.

Run with Debian's /usr/bin/python3 (where the `mininet` package lives), as
root. Memory per node: the drop of MemAvailable from before the build to
after start, over N; and the PSS of Mininet's node shells and of this
process, over N.
"""

import json
import os
import sys
import time

from mininet.link import Link
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.topo import LinearTopo, SingleSwitchTopo, Topo


class RingTopo(Topo):
    """N hosts joined in a ring by point-to-point links."""

    def build(self, n=3):
        routers = [self.addHost(f"r{i}") for i in range(1, n + 1)]
        for i in range(n):
            a, b = routers[i], routers[(i + 1) % n]
            self.addLink(
                a,
                b,
                params1={"ip": f"10.{i // 64}.{(i % 64) * 4 + 1}.1/30"},
                params2={"ip": f"10.{i // 64}.{(i % 64) * 4 + 2}.1/30"},
            )


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    shape, n = sys.argv[1], int(sys.argv[2])
    topo = {
        "star": lambda: SingleSwitchTopo(k=n),
        "linear": lambda: LinearTopo(k=n, n=1),
        "ring": lambda: RingTopo(n=n),
    }[shape]()
    before = mem_available_kib()
    t0 = time.monotonic()
    net = Mininet(topo=topo, switch=LinuxBridge, controller=None, link=Link)
    net.start()
    up = time.monotonic() - t0
    after = mem_available_kib()
    # Its node shells, and this Python process that holds the network.
    pss = sum(pss_kib(h.pid) for h in net.hosts) + pss_kib(os.getpid())
    t0 = time.monotonic()
    net.stop()
    down = time.monotonic() - t0
    print(
        json.dumps(
            {
                "up": round(up, 2),
                "down": round(down, 2),
                "mem_per_node_kib": (before - after) // n,
                "pss_per_node_kib": pss // n,
            }
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    main()
