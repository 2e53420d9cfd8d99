"""Two meters, one truth: the gateway's count of bytes it read from the host and the kernel's counter of
bytes the host sent to the gateway, compared per interval.

The kernel counts IP packets (headers included); the gateway counts TCP payload. The kernel's payload is
estimated as ``bytes - packets * header_bytes`` (IPv4 20 + TCP 32 with timestamps = 52; SYN-ACKs carry 8
more, a few bytes per connection). Traffic that leaves the host for the gateway's address without passing
through the gateway's proxy (another port on the gateway box, a raw socket) is in the kernel's count only:
the gap. A gap above ``threshold`` of the larger meter, and above ``min_gap_bytes`` (a response in flight
at the instant of reading), is an alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_THRESHOLD = 0.02
DEFAULT_MIN_GAP = 16 * 1024
DEFAULT_HEADER_BYTES = 52


@dataclass(frozen=True)
class Reconciliation:
    gateway_bytes: int
    kernel_bytes: int  # the kernel's payload estimate
    gap_bytes: int
    ratio: float
    alarm: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "gateway_bytes": self.gateway_bytes,
            "kernel_bytes": self.kernel_bytes,
            "gap_bytes": self.gap_bytes,
            "ratio": round(self.ratio, 6),
            "alarm": self.alarm,
        }


def reconcile(
    gateway_bytes: int,
    kernel_bytes: int,
    kernel_packets: int,
    *,
    gateway_high: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    min_gap_bytes: int = DEFAULT_MIN_GAP,
    header_bytes: int = DEFAULT_HEADER_BYTES,
) -> Reconciliation:
    """Compare one interval's deltas of the two meters.

    The kernel's counters are read by a subprocess while the gateway keeps forwarding, so the gateway's count
    at the kernel's instant is only known to lie in ``[gateway_bytes, gateway_high]`` (its totals read just
    before and just after); a kernel figure inside that bracket is no gap. ``gateway_bytes`` reported is the
    bracket's point nearest the kernel's, the value the next interval should start from.
    """
    high = gateway_bytes if gateway_high is None else max(gateway_high, gateway_bytes)
    kernel_payload = max(0, kernel_bytes - kernel_packets * header_bytes)
    nearest = min(max(kernel_payload, gateway_bytes), high)
    gap = abs(kernel_payload - nearest)
    larger = max(kernel_payload, nearest)
    ratio = gap / larger if larger else 0.0
    return Reconciliation(nearest, kernel_payload, gap, ratio, gap > min_gap_bytes and ratio > threshold)
