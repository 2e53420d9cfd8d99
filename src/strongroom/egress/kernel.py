"""The kernel layer on a weight host: nftables that let the host speak only to its gateway, within a named
quota per period, with counters; and a tc rate ceiling (TBF) on the link to the gateway.

As installed (``render``)::

    table inet strongroom_egress {
        comment "strongroom-egress host=H gateway=G period=P quota=Q"
        quota budget { over Q bytes used U bytes }       # U restored from the last checkpoint
        counter to_gateway { packets N bytes B }          # restored on a reapply: the meters stay continuous
        counter dropped { ... }
        counter dropped_in { ... }
        chain output {
            type filter hook output priority filter; policy drop;
            oifname "lo" accept
            ip daddr G quota name "budget" drop           # past the quota, nothing more leaves
            ip daddr G counter name "to_gateway" accept   # the second meter
            counter name "dropped" drop                   # everything else: the default-drop policy, counted
        }
        chain input {
            type filter hook input priority filter; policy drop;
            iifname "lo" accept
            ip saddr G accept
            counter name "dropped_in" drop
        }
    }

IPv6 (and everything that is not IPv4 to the gateway) falls to the drop policy. The whole table is replaced
in one nft transaction, so there is never a moment without rules. A quota resets when its table is reloaded
unless ``used`` is written back: ``apply`` carries the current usage over (and the counters) when the
installed rules belong to the same period, and takes the larger of that and what the last checkpoint on the
ledger says (a reboot or a flush loses the kernel's count, not the ledger's).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from typing import Any

from strongroom.egress.errors import KernelRulesError

TABLE = "strongroom_egress"
FAMILY = "inet"
COMMAND_TIMEOUT = 15.0
_COMMENT = re.compile(r'comment "strongroom-egress host=(\S+) gateway=(\S+) period=([0-9]+) quota=([0-9]+)"')
_PERIOD = re.compile(r"period=[0-9]+")
_HOST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_INTERFACE = re.compile(r"[A-Za-z0-9._@-]{1,15}")


@dataclass(frozen=True)
class KernelRules:
    """The rules for one weight host, for one period."""

    host_id: str
    gateway: str  # the gateway's IPv4 address: the one peer the host may send to
    quota_bytes: int  # per period, IP bytes (headers included)
    period_start: int  # Unix seconds
    ceiling_bits_per_s: int | None = None  # tc TBF rate on the link to the gateway; None: no shaping
    interface: str | None = None  # the link to the gateway; None: the one the route to the gateway uses

    def __post_init__(self) -> None:
        if not _HOST_ID.fullmatch(self.host_id):
            raise KernelRulesError(f"host id {self.host_id[:70]!r} must be 1-64 of A-Z a-z 0-9 . _ : -")
        try:
            address = ipaddress.ip_address(self.gateway)
        except ValueError:
            raise KernelRulesError(f"gateway {self.gateway[:60]!r} is not an IP address") from None
        if address.version != 4 or address.is_unspecified or address.is_multicast:
            raise KernelRulesError(f"gateway {self.gateway} must be a unicast IPv4 address")
        if self.quota_bytes < 0 or self.period_start < 0:
            raise KernelRulesError("quota and period start must not be negative")
        if self.ceiling_bits_per_s is not None and self.ceiling_bits_per_s < 8_000:
            raise KernelRulesError("a tc ceiling below 8 kbit/s cannot pass one full-size packet a second")
        if self.interface is not None and not _INTERFACE.fullmatch(self.interface):
            raise KernelRulesError(f"interface name {self.interface[:20]!r} is not valid")


@dataclass(frozen=True)
class Carried:
    """Usage written into the rules when they are (re)installed."""

    used_bytes: int = 0
    counter_packets: int = 0
    counter_bytes: int = 0
    dropped_packets: int = 0
    dropped_bytes: int = 0
    dropped_in_packets: int = 0
    dropped_in_bytes: int = 0


def render(rules: KernelRules, carried: Carried | None = None) -> str:
    """The nft script that replaces the table atomically (add, delete, create in one transaction)."""
    c = carried or Carried()
    g = rules.gateway
    comment = (
        f"strongroom-egress host={rules.host_id} gateway={g} period={rules.period_start} quota={rules.quota_bytes}"
    )
    return (
        f"table {FAMILY} {TABLE}\n"
        f"delete table {FAMILY} {TABLE}\n"
        f"table {FAMILY} {TABLE} {{\n"
        f'\tcomment "{comment}"\n'
        f"\tquota budget {{ over {rules.quota_bytes} bytes used {c.used_bytes} bytes }}\n"
        f"\tcounter to_gateway {{ packets {c.counter_packets} bytes {c.counter_bytes} }}\n"
        f"\tcounter dropped {{ packets {c.dropped_packets} bytes {c.dropped_bytes} }}\n"
        f"\tcounter dropped_in {{ packets {c.dropped_in_packets} bytes {c.dropped_in_bytes} }}\n"
        "\tchain output {\n"
        "\t\ttype filter hook output priority filter; policy drop;\n"
        '\t\toifname "lo" accept\n'
        f'\t\tip daddr {g} quota name "budget" drop\n'
        f'\t\tip daddr {g} counter name "to_gateway" accept\n'
        '\t\tcounter name "dropped" drop\n'
        "\t}\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy drop;\n"
        '\t\tiifname "lo" accept\n'
        f"\t\tip saddr {g} accept\n"
        '\t\tcounter name "dropped_in" drop\n'
        "\t}\n"
        "}\n"
    )


@dataclass(frozen=True)
class KernelReading:
    """What the kernel layer on a host says right now."""

    installed: bool
    host_id: str | None = None
    gateway: str | None = None
    period_start: int | None = None
    quota_bytes: int = 0
    used_bytes: int = 0
    counter_packets: int = 0
    counter_bytes: int = 0
    dropped_packets: int = 0
    dropped_bytes: int = 0
    dropped_in_packets: int = 0
    dropped_in_bytes: int = 0
    output_policy: str | None = None
    rules_digest: str = "none"
    interface: str | None = None
    ceiling_bits_per_s: int | None = None

    @property
    def exhausted(self) -> bool:
        return self.installed and self.used_bytes >= self.quota_bytes

    def payload_bytes(self, header_bytes: int) -> int:
        """The host's TCP payload to the gateway, estimated from the counter: bytes less a header per packet."""
        return max(0, self.counter_bytes - self.counter_packets * header_bytes)

    def carried(self) -> Carried:
        return Carried(
            self.used_bytes,
            self.counter_packets,
            self.counter_bytes,
            self.dropped_packets,
            self.dropped_bytes,
            self.dropped_in_packets,
            self.dropped_in_bytes,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "installed": self.installed,
            "host_id": self.host_id,
            "gateway": self.gateway,
            "period_start": self.period_start,
            "quota_bytes": self.quota_bytes,
            "used_bytes": self.used_bytes,
            "exhausted": self.exhausted,
            "counter": {"packets": self.counter_packets, "bytes": self.counter_bytes},
            "dropped": {"packets": self.dropped_packets, "bytes": self.dropped_bytes},
            "dropped_in": {"packets": self.dropped_in_packets, "bytes": self.dropped_in_bytes},
            "output_policy": self.output_policy,
            "rules_digest": self.rules_digest,
            "interface": self.interface,
            "ceiling_bits_per_s": self.ceiling_bits_per_s,
        }


class Kernel:
    """Runs nft, tc and ip on this machine, or inside a named network namespace (``ip netns exec NAME``)."""

    def __init__(self, netns: str | None = None) -> None:
        if netns is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", netns):
            raise KernelRulesError(f"network namespace name {netns[:40]!r} is not valid")
        self.netns = netns

    def _run(self, *command: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        tool = shutil.which(command[0], path="/usr/sbin:/sbin:/usr/bin:/bin")
        if tool is None:
            raise KernelRulesError(f"{command[0]} is not installed (Debian: nftables, iproute2)")
        full = ["ip", "netns", "exec", self.netns, tool, *command[1:]] if self.netns else [tool, *command[1:]]
        try:
            done = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise KernelRulesError(f"{command[0]} did not finish within {COMMAND_TIMEOUT:.0f}s") from None
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise KernelRulesError(f"{' '.join(command[:4])} failed: {' / '.join(said[-3:])[:400]}")
        return done

    # -- reading ---------------------------------------------------------------------------------------

    def read(self) -> KernelReading:
        """The installed rules, quota and counters (``installed=False`` when the table is absent)."""
        listing = self._run("nft", "-j", "list", "table", FAMILY, TABLE, check=False)
        if listing.returncode != 0:
            if "No such file" in listing.stderr or "does not exist" in listing.stderr:
                return KernelReading(installed=False, ceiling_bits_per_s=None)
            raise KernelRulesError(f"nft list table failed: {listing.stderr.strip()[:300]}")
        stateless = self._run("nft", "-s", "list", "table", FAMILY, TABLE).stdout
        values: dict[str, Any] = {}
        policy = None
        for item in json.loads(listing.stdout).get("nftables", []):
            if "quota" in item and item["quota"].get("name") == "budget":
                values["quota_bytes"] = int(item["quota"]["bytes"])
                values["used_bytes"] = int(item["quota"].get("used", 0))
            elif "counter" in item and item["counter"].get("name") in ("to_gateway", "dropped", "dropped_in"):
                name = {"to_gateway": "counter"}.get(item["counter"]["name"], item["counter"]["name"])
                values[f"{name}_packets"] = int(item["counter"]["packets"])
                values[f"{name}_bytes"] = int(item["counter"]["bytes"])
            elif "chain" in item and item["chain"].get("name") == "output":
                policy = item["chain"].get("policy")
        found = _COMMENT.search(stateless)
        if found is not None:
            values.update(host_id=found.group(1), gateway=found.group(2), period_start=int(found.group(3)))
        # the digest names the rules, not the period they are counting: a new period's rules digest the same
        digest = "sha256:" + hashlib.sha256(_PERIOD.sub("period=*", stateless).encode()).hexdigest()
        interface = None
        ceiling = None
        if found is not None:
            interface = self.route_interface(found.group(2), missing_ok=True)
            ceiling = self.ceiling(interface) if interface else None
        complete = found is not None and "quota_bytes" in values and "counter_bytes" in values and policy == "drop"
        return KernelReading(
            installed=complete,
            output_policy=policy,
            rules_digest=digest,
            interface=interface,
            ceiling_bits_per_s=ceiling,
            **values,
        )

    def route_interface(self, address: str, missing_ok: bool = False) -> str | None:
        done = self._run("ip", "-j", "route", "get", address, check=not missing_ok)
        if done.returncode != 0:
            return None
        routes = json.loads(done.stdout or "[]")
        return str(routes[0]["dev"]) if routes and "dev" in routes[0] else None

    def ceiling(self, interface: str) -> int | None:
        """The TBF rate on ``interface`` in bits/s, or None when its root qdisc is not a TBF."""
        done = self._run("tc", "-j", "qdisc", "show", "dev", interface, check=False)
        if done.returncode != 0:
            return None
        for qdisc in json.loads(done.stdout or "[]"):
            if qdisc.get("kind") == "tbf" and qdisc.get("root"):
                return int(qdisc["options"]["rate"]) * 8
        return None

    # -- writing ---------------------------------------------------------------------------------------

    def apply(self, rules: KernelRules, restore_used: int = 0) -> KernelReading:
        """Install (or replace) the rules; the quota's usage is the larger of what the installed rules of the
        same period counted and ``restore_used`` (the last checkpoint's figure); counters carry over."""
        current = self.read()
        same_period = current.installed and current.period_start == rules.period_start
        carried = current.carried() if same_period else Carried()
        if not same_period and current.installed:
            # a new period: the quota starts again, the counters (a meter, not a budget) carry on
            carried = replace(current.carried(), used_bytes=0)
        carried = replace(carried, used_bytes=max(carried.used_bytes, restore_used))
        self._run("nft", "-f", "-", stdin=render(rules, carried))
        interface = rules.interface or self.route_interface(rules.gateway)
        if rules.ceiling_bits_per_s is not None and interface is not None:
            burst = max(rules.ceiling_bits_per_s // 8 // 10, 16_384)  # 100 ms of the rate, at least 16 KiB
            self._run(
                "tc", "qdisc", "replace", "dev", interface, "root", "tbf",
                "rate", f"{rules.ceiling_bits_per_s}bit", "burst", str(burst), "latency", "100ms",
            )  # fmt: skip
        reading = self.read()
        if not reading.installed or reading.quota_bytes != rules.quota_bytes:
            raise KernelRulesError("the rules read back after installing are not the ones installed")
        return reading

    def remove(self) -> None:
        """Delete the table (every output then flows freely: for tests and decommissioning only)."""
        self._run("nft", "-f", "-", stdin=f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")

    def flush_all(self) -> None:
        """``nft flush ruleset``: what an operator (or a reboot) does that loses the kernel's counts."""
        self._run("nft", "flush", "ruleset")
