"""The narrow, metered interface in front of a weight host's inference server.

The gateway forwards only ``POST /v1/embeddings`` and ``POST /v1/generate`` requests that pass the schema
(``strongroom.egress.schema``), rebuilt; it never forwards another path, method, header or a body over the
cap, and it refuses chunked bodies. It reads the host's reply itself (Content-Length only, capped), counts
every byte it read from the host against the host's budget (per model too), checks the reply against the
schema and sends on its own rebuilt copy. A token bucket sets the rate. When the budget is spent it refuses
with 429 ``EgressBudgetSpent`` and writes ``egress.exhausted``; nothing is delivered past the budget.

Every ``interval_seconds`` it reconciles its meter with the kernel's counters on the host (a gap over
``gap_threshold`` is an ``egress.alarm``), feeds the interval's bytes to the EWMA/CUSUM detector (an alarm
tightens the rate), and writes a signed ``egress.checkpoint``. At start it restores the period's usage, the
detector and the tightened rate from its last checkpoint, so a restart does not reset a budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from strongroom.egress import records
from strongroom.egress.budget import period_start
from strongroom.egress.detector import Detector, DetectorSettings
from strongroom.egress.errors import GatewayConfigError, SchemaError
from strongroom.egress.httpio import (
    MAX_HEAD,
    HttpError,
    UpstreamError,
    UpstreamReply,
    error_body,
    read_head,
    read_reply,
    response,
    stop_on_signals,
)
from strongroom.egress.kernel import Kernel, KernelReading, KernelRules
from strongroom.egress.meter import GatewayMeter, TokenBucket
from strongroom.egress.reconcile import DEFAULT_HEADER_BYTES, DEFAULT_MIN_GAP, DEFAULT_THRESHOLD, reconcile
from strongroom.egress.schema import (
    ROUTES,
    CheckedRequest,
    Limits,
    ModelSpec,
    check_request,
    check_response,
    response_cap,
)

log = logging.getLogger("strongroom.egress.gateway")

ALLOWED_HEADERS = frozenset(
    {"host", "content-type", "content-length", "accept", "accept-encoding", "connection", "user-agent"}
)
JSON_TYPES = ("application/json", "application/json; charset=utf-8", "application/json;charset=utf-8")
POOL_SIZE = 32
MAX_PENDING = 1000  # entries kept for the ledger while it is unreachable


@dataclass(frozen=True)
class GatewayConfig:
    """Everything one gateway needs; ``load`` reads it from a JSON file."""

    host_id: str
    listen: str  # ADDRESS:PORT clients connect to
    upstream: str  # ADDRESS:PORT of the host's inference server
    models: dict[str, ModelSpec]
    budget_bytes: int  # per period, bytes read from the host
    period_seconds: int = 86_400
    rate_bytes_per_s: float = 0.0  # 0: budget / period * 4
    bucket_bytes: int = 0  # 0: a minute of the rate, at least one largest response
    limits: Limits = field(default_factory=Limits)
    interval_seconds: float = 60.0
    ledger: str | None = None  # URL of the ledger
    key: str | None = None  # the gateway's signing key (PEM file)
    kernel_netns: str | None = None  # read (and roll over) the host's kernel rules in this network namespace
    kernel_local: bool = False  # ... or in the gateway's own namespace
    kernel_quota_bytes: int = 0  # with kernel_gateway: re-install the rules with this quota at each new period
    kernel_gateway: str | None = None  # the gateway address the host's rules allow
    kernel_ceiling_bits_per_s: int | None = None
    header_bytes: int = DEFAULT_HEADER_BYTES
    gap_threshold: float = DEFAULT_THRESHOLD
    min_gap_bytes: int = DEFAULT_MIN_GAP
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    tighten_factor: float = 0.1
    upstream_timeout: float = 30.0
    client_timeout: float = 30.0
    max_connections: int = 256

    def __post_init__(self) -> None:
        if not self.models:
            raise GatewayConfigError("a gateway needs at least one model")
        if self.budget_bytes < 0 or self.period_seconds <= 0 or self.interval_seconds <= 0:
            raise GatewayConfigError("budget, period and interval must be positive")
        if not 0 < self.tighten_factor <= 1:
            raise GatewayConfigError("tighten_factor must be in (0, 1]")
        if self.ledger and not self.key:
            raise GatewayConfigError("a gateway that writes to a ledger needs its signing key (key)")
        for text in (self.listen, self.upstream):
            _split(text)

    @property
    def rate(self) -> float:
        return self.rate_bytes_per_s or self.budget_bytes / self.period_seconds * 4

    @property
    def bucket(self) -> float:
        return float(self.bucket_bytes or max(math.ceil(self.rate * 60), self.limits.max_response_bytes))

    @property
    def model_ids(self) -> list[str]:
        return sorted({m.model_id for m in self.models.values()})

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> GatewayConfig:
        if not isinstance(raw, dict):
            raise GatewayConfigError("a gateway configuration is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise GatewayConfigError(f"unknown gateway setting {unknown[0]!r}")
        values = dict(raw)
        try:
            values["models"] = {n: ModelSpec.from_json(n, m) for n, m in dict(raw["models"]).items()}
            values["limits"] = Limits(**dict(raw.get("limits") or {}))
            values["detector"] = DetectorSettings.from_json(raw.get("detector"))
            return cls(**values)
        except (KeyError, TypeError, ValueError, SchemaError) as exc:
            raise GatewayConfigError(f"gateway configuration: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> GatewayConfig:
        try:
            return cls.from_json(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise GatewayConfigError(f"{path}: not JSON: {exc}") from None


def _split(text: str) -> tuple[str, int]:
    address, _, port = text.rpartition(":")
    if not address or not port.isdigit() or not 0 <= int(port) < 65536:
        raise GatewayConfigError(f"{text!r} is not ADDRESS:PORT")
    return address.strip("[]"), int(port)


@dataclass
class Tick:
    """What one scheduled check found (also returned to tests)."""

    reading: KernelReading | None = None
    reconciliation: dict[str, Any] | None = None
    alarms: list[str] = field(default_factory=list)
    entries: int = 0


class Gateway:
    """One host's gateway: ``await start()``, serve, ``await stop()``."""

    def __init__(
        self,
        config: GatewayConfig,
        ledger: records.EgressLedger | None = None,
        kernel: Kernel | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.kernel = kernel
        self.clock = clock
        now = clock()
        self.meter = GatewayMeter(
            config.host_id, config.budget_bytes, config.period_seconds, period_start(now, config.period_seconds)
        )
        self.bucket = TokenBucket(config.rate, config.bucket, stamp=time.monotonic())
        self.detector = Detector(config.detector)
        self.tightened = False
        self.upstream = _split(config.upstream)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._logged: set[tuple[str, int]] = set()  # (meter, period) exhausted entries written
        self._closed_periods: list[dict[str, Any]] = []
        self._connections = 0
        self._stopping = False
        self._base: tuple[int, int, int] | None = None  # gateway total, kernel bytes, kernel packets
        self._prev_total = 0
        self._digest: str | None = None
        self._rules_missing = False
        self.last_tick: Tick | None = None

    # -- life cycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.restore)
        reading = await self._read_kernel()
        self._baseline(reading)
        host, port = _split(self.config.listen)
        self._server = await asyncio.start_server(self._client, host, port, limit=MAX_HEAD, backlog=512)
        self._ticker = asyncio.create_task(self._tick_loop())

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, final: bool = True) -> None:
        self._stopping = True
        self._wake.set()
        if self._ticker is not None:
            try:
                await asyncio.wait_for(self._ticker, 30)
            except (TimeoutError, asyncio.CancelledError):
                self._ticker.cancel()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
        if final:
            await self.tick(final=True)

    def restore(self) -> None:
        """Take the period's usage, the detector and the rate from this gateway's last checkpoint."""
        if self.ledger is None:
            return
        start = self.meter.period_start
        host = self.config.host_id
        found = [
            e
            for e in self.ledger.since(records.CHECKPOINT, start - self.config.period_seconds)
            if e.body.get("host") == host
        ]
        if found:
            last = found[-1].body
            self.detector.restore(last.get("detector"))
            if last.get("tightened") is True:
                self._tighten()
        body = records.last_checkpoint(found, host, start)
        if body is not None:
            gateway = dict(body.get("meters", {}).get("gateway") or {})
            self.meter.used_bytes = max(self.meter.used_bytes, int(body.get("bytes_used", 0)))
            self.meter.by_model = {str(k): int(v) for k, v in dict(gateway.get("by_model") or {}).items()}
            self.meter.exhausted = self.meter.used_bytes >= self.meter.budget_bytes or body.get("exhausted") is True
        for entry in self.ledger.since(records.EXHAUSTED, start):
            if entry.body.get("host") == host and entry.body.get("period_start") == records.time_text(start):
                self._logged.add((str(entry.body.get("meter")), start))
                if entry.body.get("meter") == "gateway":
                    self.meter.exhausted = True

    # -- the interface ---------------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connections >= self.config.max_connections:
            writer.close()
            return
        self._connections += 1
        try:
            while True:
                head = await asyncio.wait_for(read_head(reader), self.config.client_timeout)
                if head is None:
                    break
                status, body, extra = await self._handle(head, reader)
                close = status != 200 or not head.keep_alive
                writer.write(response(status, body, extra, close=close))
                await writer.drain()
                if close:
                    break
        except HttpError as exc:
            self.meter.refuse(exc.kind)
            with contextlib.suppress(ConnectionError):
                writer.write(response(exc.status, error_body(str(exc), exc.kind), close=True))
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections -= 1
            writer.close()

    async def _handle(self, head: Any, reader: asyncio.StreamReader) -> tuple[int, bytes, dict[str, str]]:
        if head.path not in ROUTES:
            raise HttpError(
                404, f"no such path {head.path[:80]!r} (this gateway serves {', '.join(ROUTES)})", "NotFound"
            )
        if head.method != "POST":
            raise HttpError(405, f"{head.method} is not allowed: POST only", "MethodNotAllowed")
        for name in head.headers:
            if name not in ALLOWED_HEADERS:
                raise HttpError(400, f"header {name!r} is not allowed through the gateway", "HeaderRefused")
        if head.headers.get("content-type", "").lower() not in JSON_TYPES:
            raise HttpError(415, "Content-Type must be application/json", "UnsupportedMediaType")
        length = head.content_length(self.config.limits.max_request_bytes)
        raw = await asyncio.wait_for(reader.readexactly(length), self.config.client_timeout)
        try:
            checked = check_request(head.path, raw, self.config.models, self.config.limits)
        except SchemaError as exc:
            raise HttpError(400, str(exc), "SchemaRefused") from None
        return await self._forward(checked)

    def _refused(
        self, status: int, message: str, kind: str, extra: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        self.meter.refuse(kind)
        return status, error_body(message, kind), extra or {}

    def _spent(self) -> tuple[int, bytes, dict[str, str]]:
        self.meter.exhausted = True
        self._wake.set()
        reset = self.meter.period_start + self.config.period_seconds
        message = (
            f"egress budget for host {self.config.host_id} is spent for this period (used {self.meter.used_bytes} "
            f"of {self.meter.budget_bytes} bytes); it resets at {records.time_text(reset)}"
        )
        retry = str(max(1, int(reset - self.clock())))
        return self._refused(429, message, "EgressBudgetSpent", {"Retry-After": retry})

    async def _forward(self, checked: CheckedRequest) -> tuple[int, bytes, dict[str, str]]:
        self._roll_if_due(self.clock())
        now = time.monotonic()
        wait = self.bucket.wait_seconds(now)
        if wait > 0:
            retry = "3600" if math.isinf(wait) else str(max(1, math.ceil(wait)))
            return self._refused(429, f"egress rate limit: retry in {retry}s", "RateLimited", {"Retry-After": retry})
        cap = response_cap(checked, self.config.limits)
        if self.meter.exhausted or not self.meter.admit(cap):
            return self._spent()
        try:
            reply = await asyncio.wait_for(self._exchange(checked, cap), self.config.upstream_timeout)
        except UpstreamError as exc:
            self.meter.count_unsettled(cap, exc.read_bytes)
            return self._refused(502, "the host's reply broke the protocol", "UpstreamProtocol")
        except (TimeoutError, OSError):
            self.meter.count_unsettled(cap, 0)
            return self._refused(504, "the host did not answer in time", "UpstreamTimeout")
        model_id = checked.model.model_id
        if reply.status != 200:
            self.meter.count_unsettled(cap, reply.read_bytes)
            return self._refused(502, f"the host answered {reply.status}", "UpstreamStatus")
        within = self.meter.settle(cap, model_id, reply.read_bytes)
        self.bucket.take(reply.read_bytes, time.monotonic())
        if not within:
            return self._spent()
        try:
            out = check_response(checked, reply.body, self.config.limits)
        except SchemaError:
            return self._refused(502, "the host's response does not fit the interface", "ResponseRefused")
        self.meter.delivered_bytes += len(out)
        if self.meter.exhausted:
            self._wake.set()
        return 200, out, {"X-Egress-Remaining": str(self.meter.remaining)}

    async def _exchange(self, checked: CheckedRequest, cap: int) -> UpstreamReply:
        host, port = self.upstream
        head = (
            f"POST {checked.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(checked.body)}\r\n\r\n"
        ).encode()
        for attempt in (0, 1):
            reused = bool(self._idle)
            if reused:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD)
            try:
                writer.write(head + checked.body)
                await writer.drain()
                reply = await read_reply(reader, cap)
            except (UpstreamError, ConnectionError) as exc:
                writer.close()
                read = exc.read_bytes if isinstance(exc, UpstreamError) else 0
                if reused and read == 0 and attempt == 0:
                    continue  # an idle connection the host had closed: once more on a fresh one
                if isinstance(exc, UpstreamError):
                    raise
                raise UpstreamError(str(exc), 0) from None
            except BaseException:
                writer.close()
                raise
            if reply.keep_alive and len(self._idle) < POOL_SIZE:
                self._idle.append((reader, writer))
            else:
                writer.close()
            return reply
        raise UpstreamError("no connection to the host", 0)

    # -- the schedule ----------------------------------------------------------------------------------

    def _roll_if_due(self, now: float) -> None:
        start = period_start(now, self.config.period_seconds)
        if start != self.meter.period_start:
            self._closed_periods.append(self._checkpoint_body(None, None, final=True))
            self.meter.roll(start)
            self._wake.set()

    def _tighten(self) -> None:
        if not self.tightened:
            self.bucket.tighten(self.config.tighten_factor)
            self.tightened = True

    async def _read_kernel(self) -> KernelReading | None:
        if self.kernel is None:
            return None
        try:
            return await asyncio.to_thread(self.kernel.read)
        except Exception as exc:  # a reading that fails is a missing meter, reported as such
            log.warning("kernel reading failed: %s", exc)
            return KernelReading(installed=False)

    def _baseline(self, reading: KernelReading | None) -> None:
        if reading is not None and reading.installed:
            self._base = (self.meter.total_bytes, reading.counter_bytes, reading.counter_packets)
            self._digest = reading.rules_digest
        self._prev_total = self.meter.total_bytes

    async def _tick_loop(self) -> None:
        interval = self.config.interval_seconds
        due = time.monotonic() + interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._stopping:
                return
            try:
                if time.monotonic() >= due:
                    due = time.monotonic() + interval
                    await self.tick()
                else:
                    await self.events()
            except Exception:
                log.exception("egress tick failed")

    def _exhausted_entries(self, meter: str, used: int, budget: int) -> None:
        key = (meter, self.meter.period_start)
        if key in self._logged:
            return
        self._logged.add(key)
        for model_id in self.config.model_ids:
            body = {
                "host": self.config.host_id,
                "model_id": model_id,
                "period_start": records.time_text(self.meter.period_start),
                "period_seconds": self.config.period_seconds,
                "meter": meter,
                "used_bytes": used,
                "budget_bytes": budget,
            }
            self._pending.append((records.EXHAUSTED, body))

    def _alarm(self, kind: str, detail: dict[str, Any], tick: Tick) -> None:
        alarm_id = records.new_alarm_id(self.config.host_id, kind)
        tick.alarms.append(kind)
        log.warning("egress alarm for host %s: %s %s", self.config.host_id, kind, detail)
        for model_id in self.config.model_ids:
            body = {
                "host": self.config.host_id,
                "model_id": model_id,
                "alarm_id": alarm_id,
                "kind": kind,
                "detail": detail,
            }
            self._pending.append((records.ALARM, body))
        self._tighten()

    async def events(self) -> None:
        """Between ticks: write what cannot wait (exhaustion, a closed period's final checkpoint)."""
        self._roll_if_due(self.clock())
        if self.meter.exhausted:
            self._exhausted_entries("gateway", self.meter.used_bytes, self.meter.budget_bytes)
        await self._flush()

    async def tick(self, final: bool = False) -> Tick:
        """Reconcile the meters, run the detector, write a checkpoint (and any alarms)."""
        tick = Tick()
        self._roll_if_due(self.clock())
        if (
            self._closed_periods
            and self.kernel is not None
            and self.config.kernel_gateway
            and self.config.kernel_quota_bytes
        ):
            rules = KernelRules(
                self.config.host_id,
                self.config.kernel_gateway,
                self.config.kernel_quota_bytes,
                self.meter.period_start,
                self.config.kernel_ceiling_bits_per_s,
            )
            await asyncio.to_thread(self.kernel.apply, rules, 0)
        before = self.meter.total_bytes  # the kernel is read while forwarding goes on: bracket its instant
        reading = await self._read_kernel()
        tick.reading = reading
        total = self.meter.total_bytes
        kernel_payload = 0
        if reading is not None:
            if not reading.installed:
                if not self._rules_missing:
                    self._alarm("rules-missing", {"output_policy": reading.output_policy}, tick)
                self._rules_missing = True
                self._base = None
            else:
                if self._rules_missing or self._base is None:
                    self._rules_missing = False
                    self._base = (total, reading.counter_bytes, reading.counter_packets)
                    self._digest = reading.rules_digest
                if self._digest is not None and reading.rules_digest != self._digest and not self._closed_periods:
                    self._alarm("rules-changed", {"was": self._digest, "now": reading.rules_digest}, tick)
                self._digest = reading.rules_digest
                base_total, base_bytes, base_packets = self._base
                anchor = total
                if reading.counter_bytes < base_bytes or reading.counter_packets < base_packets:
                    self._alarm("counters-reset", {"bytes": reading.counter_bytes, "was": base_bytes}, tick)
                else:
                    result = reconcile(
                        max(0, before - base_total),
                        reading.counter_bytes - base_bytes,
                        reading.counter_packets - base_packets,
                        gateway_high=total - base_total,
                        threshold=self.config.gap_threshold,
                        min_gap_bytes=self.config.min_gap_bytes,
                        header_bytes=self.config.header_bytes,
                    )
                    tick.reconciliation = result.to_json()
                    kernel_payload = result.kernel_bytes
                    if result.alarm:
                        self._alarm("meter-gap", result.to_json(), tick)
                    # the next interval starts where the gateway stood at the kernel's instant, as near as known
                    anchor = base_total + result.gateway_bytes
                self._base = (anchor, reading.counter_bytes, reading.counter_packets)
                if reading.exhausted:
                    self._exhausted_entries("kernel", reading.used_bytes, reading.quota_bytes)
        self._pending[:0] = [(records.CHECKPOINT, b) for b in self._closed_periods]
        self._closed_periods.clear()
        if not final:
            observed = self.detector.observe(float(max(total - self._prev_total, kernel_payload)))
            if observed.alarm:
                self._alarm(
                    "anomaly", {"bytes": observed.x, "z": round(observed.z, 3), "cusum": round(observed.cusum, 3)}, tick
                )
        self._prev_total = total
        if self.meter.exhausted:
            self._exhausted_entries("gateway", self.meter.used_bytes, self.meter.budget_bytes)
        self._pending.append((records.CHECKPOINT, self._checkpoint_body(reading, tick.reconciliation, final)))
        tick.entries = await self._flush()
        self.last_tick = tick
        return tick

    def _checkpoint_body(
        self, reading: KernelReading | None, reconciliation: dict[str, Any] | None, final: bool
    ) -> dict[str, Any]:
        installed = reading is not None and reading.installed
        return {
            "host": self.config.host_id,
            "models": self.config.model_ids,
            "period_start": records.time_text(self.meter.period_start),
            "period_seconds": self.config.period_seconds,
            "interval_seconds": self.config.interval_seconds,
            "bytes_used": self.meter.used_bytes,
            "budget_bytes": self.meter.budget_bytes,
            "quota_bytes": reading.quota_bytes if reading is not None and installed else 0,
            "kernel_used_bytes": reading.used_bytes if reading is not None and installed else 0,
            "rules_installed": installed,
            "rules_digest": reading.rules_digest if reading is not None and installed else "none",
            "exhausted": self.meter.exhausted or (reading is not None and reading.exhausted),
            "tightened": self.tightened,
            "rate_bytes_per_s": round(self.bucket.rate, 3),
            "meters": {
                "gateway": self.meter.to_json(),
                "kernel": reading.to_json() if reading is not None else None,
                "reconcile": reconciliation,
            },
            "detector": self.detector.to_json(),
            "final": final,
        }

    async def _flush(self) -> int:
        if not self._pending:
            return 0
        if self.ledger is None:
            count = len(self._pending)
            self._pending.clear()
            return count
        batch = list(self._pending)
        when = self.clock()
        try:
            await asyncio.to_thread(self.ledger.append_many, batch, when)
        except Exception as exc:  # the ledger is down: keep the entries (bounded) and try at the next tick
            log.warning("could not write %d egress entries: %s", len(batch), exc)
            del self._pending[: max(0, len(self._pending) - MAX_PENDING)]
            return 0
        del self._pending[: len(batch)]
        return len(batch)

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.meter.to_json(),
            "exhausted": self.meter.exhausted,
            "tightened": self.tightened,
            "rate": self.bucket.rate,
        }


async def run(
    config: GatewayConfig, stop: asyncio.Event | None = None, ready: Callable[[Gateway], None] | None = None
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT), then write a final checkpoint."""

    from strongroom.signing import load_signer

    ledger = records.EgressLedger(config.ledger, load_signer(config.key)) if config.ledger and config.key else None
    kernel = Kernel(config.kernel_netns) if config.kernel_netns else (Kernel() if config.kernel_local else None)
    gateway = Gateway(config, ledger, kernel)
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    await gateway.start()
    if ready is not None:
        ready(gateway)
    try:
        await stop.wait()
    finally:
        await gateway.stop(final=True)
        if ledger is not None:
            ledger.close()
