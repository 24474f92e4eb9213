"""Virtual lamp controllers: one real OPC-UA server (asyncua) per cabinet, serving many lamps.

Theory of operation
-------------------
:class:`LampBank` is the lamps' physics and nothing else (no I/O, no clock: every method takes
``now_s``, monotonic seconds). A setpoint starts a linear fade from the lamp's current level to
the new one over the lamp's ramp time (the ramp time in force when the setpoint arrives, as a
DALI fade time). Faults override what the fade produces: a failed lamp gives no light, a
day-burner burns at full output whatever it is told, a lamp with a comms fault keeps its level
and takes the last setpoint when comms come back. Input power follows
:func:`controller.dimming.power.lamp_power_w` (the same power model the planner uses); energy
integrates it with the trapezoid rule.

:class:`VirtualController` puts a bank behind an asyncua server. Each lamp is an object under
the controller's folder, with one variable per point of the controller's
:class:`~simulation.devices.config.PointScheme` (the node ids, data types and scales come from
configuration, so a vendor's layout needs no code). Client writes to writable points reach the
bank through the address space's value setters; a named background task advances the bank every
``tick_s`` and writes the points whose wire value changed (energy at most every
``energy_publish_s``) straight into the server's address space, which is what drives data-change
subscriptions. Nothing is written for values that did not change, so an idle fleet costs little.

:meth:`VirtualController.drop_off` stops the server (connections, sessions and subscriptions
go, as when a cabinet reboots or loses its link) while the lamps keep burning;
:meth:`~VirtualController.come_back` builds a fresh server on the same port and endpoint from
the bank's state. Clients must reconnect and re-create their subscriptions.

Start-up: asyncua builds the standard address space (~2-3 s of CPU) for every server. It is
built once into a shelf under the cache folder and loaded lazily by later servers (~0.1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import ipaddress
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import numpy.typing as npt
from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.address_space import AddressSpace, NodeData, NodeManagementService
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from controller.dimming.power import DEFAULT_CURVE, DriverCurve, lamp_power_w
from simulation.devices.config import (
    INTERNAL_UNITS,
    MAX_RAMP_S,
    ControllerConfig,
    DataType,
    DeviceError,
    PointRole,
    PointScheme,
    PointSpec,
    Security,
    split_node_id,
)

_log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
Clock = Callable[[], float]


class UnknownLampError(DeviceError, KeyError):
    """A lamp id that the controller does not serve."""

    def __init__(self, lamp_id: str, controller: str) -> None:
        self.lamp_id = lamp_id
        self.controller = controller
        super().__init__(f"controller {controller!r} has no lamp {lamp_id!r}")

    def __str__(self) -> str:  # KeyError would print the repr
        return str(self.args[0])


class ControllerStartError(DeviceError):
    """The OPC-UA server of a controller could not be built or started."""

    def __init__(self, controller: str, message: str) -> None:
        self.controller = controller
        super().__init__(f"controller {controller!r}: {message}")


# --- physics -----------------------------------------------------------------------------------

#: Canonical status bits of :attr:`LampBank.status`; a scheme maps them to its own bits.
STATUS_LAMP_FAILURE = 1 << 0
STATUS_DAY_BURNER = 1 << 1
STATUS_COMMS_FAULT = 1 << 2


@dataclasses.dataclass(frozen=True, slots=True)
class LampState:
    """One lamp at one moment (internal units)."""

    lamp_id: str
    setpoint_frac: float
    ramp_s: float
    level_frac: float
    power_w: float
    energy_wh: float
    failed: bool
    day_burner: bool
    comms_fault: bool


class LampBank:
    """Fades, faults, power and energy of one controller's lamps (sans-io; see the module doc)."""

    def __init__(
        self,
        lamp_ids: Sequence[str],
        *,
        rated_power_w: float,
        standby_power_w: float,
        now_s: float,
        initial_level_frac: float = 0.0,
        default_ramp_s: float = 0.0,
        curve: DriverCurve = DEFAULT_CURVE,
        name: str = "lamps",
    ) -> None:
        n = len(lamp_ids)
        if n == 0:
            raise ValueError("a lamp bank needs at least one lamp")
        if not 0.0 <= initial_level_frac <= 1.0:
            raise ValueError(
                f"initial_level_frac must be within [0, 1], got {initial_level_frac!r}"
            )
        _check_ramp(default_ramp_s)
        self.name = name
        self.lamp_ids = tuple(lamp_ids)
        self._index = {lamp_id: k for k, lamp_id in enumerate(self.lamp_ids)}
        if len(self._index) != n:
            raise ValueError("lamp ids must be unique")
        self._curve = curve
        self._rated_w = np.full(n, rated_power_w, dtype=np.float64)
        self._standby_w = np.full(n, standby_power_w, dtype=np.float64)
        self.setpoint_frac = np.full(n, initial_level_frac, dtype=np.float64)
        self.ramp_s = np.full(n, default_ramp_s, dtype=np.float64)
        self._fade_from = self.setpoint_frac.copy()
        self._fade_to = self.setpoint_frac.copy()
        self._fade_start_s = np.full(n, now_s, dtype=np.float64)
        self._fade_s = np.zeros(n, dtype=np.float64)
        self.failed = np.zeros(n, dtype=np.bool_)
        self.day_burner = np.zeros(n, dtype=np.bool_)
        self.comms_fault = np.zeros(n, dtype=np.bool_)
        self.level_frac = self.setpoint_frac.copy()
        self.power_w = self._power(self.level_frac)
        self.energy_wh = np.zeros(n, dtype=np.float64)
        self._last_s = now_s

    def __len__(self) -> int:
        return len(self.lamp_ids)

    def index(self, lamp_id: str) -> int:
        try:
            return self._index[lamp_id]
        except KeyError:
            raise UnknownLampError(lamp_id, self.name) from None

    def _power(self, level_frac: F64) -> F64:
        return lamp_power_w(level_frac, self._rated_w, self._standby_w, self._curve)

    def _fade_levels(self, now_s: float) -> F64:
        elapsed = now_s - self._fade_start_s
        progress = np.ones_like(elapsed)
        np.divide(elapsed, self._fade_s, out=progress, where=self._fade_s > 0)
        progress = np.clip(progress, 0.0, 1.0)
        return np.asarray(self._fade_from + (self._fade_to - self._fade_from) * progress)

    def _start_fade(self, k: int, target_frac: float, now_s: float) -> None:
        current = float(self._fade_levels(now_s)[k])
        self._fade_from[k] = current
        self._fade_to[k] = target_frac
        self._fade_start_s[k] = now_s
        self._fade_s[k] = self.ramp_s[k]

    def command(self, k: int, level_frac: float, now_s: float) -> None:
        """New setpoint for lamp ``k``: fade there over its ramp time (held during a comms fault)."""
        if not (math.isfinite(level_frac) and -1e-9 <= level_frac <= 1.0 + 1e-9):
            raise ValueError(f"a setpoint must be a level_frac within [0, 1], got {level_frac!r}")
        level_frac = min(max(level_frac, 0.0), 1.0)
        self.advance(now_s)
        self.setpoint_frac[k] = level_frac
        if not self.comms_fault[k]:
            self._start_fade(k, level_frac, now_s)

    def set_ramp(self, k: int, ramp_s: float) -> None:
        """Ramp time of lamp ``k``'s next fades, seconds."""
        _check_ramp(ramp_s)
        self.ramp_s[k] = ramp_s

    def set_failed(self, k: int, failed: bool, now_s: float) -> None:
        self.advance(now_s)
        self.failed[k] = failed
        self.advance(now_s)

    def set_day_burner(self, k: int, on: bool, now_s: float) -> None:
        self.advance(now_s)
        self.day_burner[k] = on
        self.advance(now_s)

    def set_comms_fault(self, k: int, on: bool, now_s: float) -> None:
        self.advance(now_s)
        was = bool(self.comms_fault[k])
        self.comms_fault[k] = on
        if was and not on and self._fade_to[k] != self.setpoint_frac[k]:
            self._start_fade(k, float(self.setpoint_frac[k]), now_s)
        self.advance(now_s)

    def advance(self, now_s: float) -> None:
        """Move every lamp to ``now_s``: level, power, and energy since the last call."""
        dt_s = max(0.0, now_s - self._last_s)
        level = np.where(self.failed, 0.0, np.where(self.day_burner, 1.0, self._fade_levels(now_s)))
        power = self._power(level)
        self.energy_wh += (self.power_w + power) * (dt_s / 7200.0)
        self.level_frac, self.power_w = level, power
        self._last_s = max(self._last_s, now_s)

    @property
    def status(self) -> npt.NDArray[np.int64]:
        """Canonical status bits per lamp (:data:`STATUS_LAMP_FAILURE`, ...)."""
        return (
            self.failed.astype(np.int64) * STATUS_LAMP_FAILURE
            + self.day_burner.astype(np.int64) * STATUS_DAY_BURNER
            + self.comms_fault.astype(np.int64) * STATUS_COMMS_FAULT
        )

    def state(self, k: int) -> LampState:
        return LampState(
            lamp_id=self.lamp_ids[k],
            setpoint_frac=float(self.setpoint_frac[k]),
            ramp_s=float(self.ramp_s[k]),
            level_frac=float(self.level_frac[k]),
            power_w=float(self.power_w[k]),
            energy_wh=float(self.energy_wh[k]),
            failed=bool(self.failed[k]),
            day_burner=bool(self.day_burner[k]),
            comms_fault=bool(self.comms_fault[k]),
        )


def _check_ramp(ramp_s: float) -> None:
    if not (math.isfinite(ramp_s) and 0.0 <= ramp_s <= MAX_RAMP_S):
        raise ValueError(f"a ramp time must be within [0, {MAX_RAMP_S:g}] s, got {ramp_s!r}")


# --- codecs (pure) -----------------------------------------------------------------------------

_VARIANT: Mapping[DataType, ua.VariantType] = {
    DataType.DOUBLE: ua.VariantType.Double,
    DataType.FLOAT: ua.VariantType.Float,
    DataType.BYTE: ua.VariantType.Byte,
    DataType.INT16: ua.VariantType.Int16,
    DataType.UINT16: ua.VariantType.UInt16,
    DataType.INT32: ua.VariantType.Int32,
    DataType.UINT32: ua.VariantType.UInt32,
    DataType.INT64: ua.VariantType.Int64,
    DataType.UINT64: ua.VariantType.UInt64,
}


def encode_array(spec: PointSpec, internal: npt.ArrayLike) -> F64:
    """Wire values of ``internal`` (float64; integers rounded and clamped to the type's range)."""
    wire = np.asarray(internal, dtype=np.float64) * spec.scale
    if spec.data_type.is_integer:
        low, high = spec.data_type.integer_range
        wire = np.clip(np.rint(wire), low, high)
    return np.asarray(wire, dtype=np.float64)


def status_word(canonical: npt.NDArray[np.int64], scheme: PointScheme) -> F64:
    """Canonical status bits -> the scheme's status word."""
    bits = scheme.status_bits
    word = (
        ((canonical & STATUS_LAMP_FAILURE) != 0) * (1 << bits.lamp_failure)
        + ((canonical & STATUS_DAY_BURNER) != 0) * (1 << bits.day_burner)
        + ((canonical & STATUS_COMMS_FAULT) != 0) * (1 << bits.comms_fault)
    )
    return np.asarray(word, dtype=np.float64)


def _variant(spec: PointSpec, wire: float) -> ua.Variant:
    value: float | int = int(wire) if spec.data_type.is_integer else float(wire)
    return ua.Variant(value, _VARIANT[spec.data_type])


# --- standard address space cache --------------------------------------------------------------

_SHELF_LOCK = threading.Lock()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/streetlight`` (or ``~/.cache/streetlight``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "streetlight"


def standard_address_space_shelf(cache_dir: Path | None = None) -> Path:
    """A shelf of asyncua's standard address space, built on first use (blocking, ~3 s).

    Keyed by the asyncua and Python versions (the shelf holds pickles). Built in a private
    folder that is then renamed into place, so concurrent processes never see half a shelf.
    """
    version = importlib.metadata.version("asyncua")
    folder = (cache_dir or default_cache_dir()) / (
        f"asyncua-{version}-py{sys.version_info.major}{sys.version_info.minor}"
    )
    shelf = folder / "standard"
    if shelf.is_file():
        return shelf
    with _SHELF_LOCK:
        if shelf.is_file():
            return shelf
        folder.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
        try:
            from asyncua.server.standard_address_space import standard_address_space

            aspace = AddressSpace()
            standard_address_space.fill_address_space(  # type: ignore[no-untyped-call]
                NodeManagementService(aspace)
            )
            aspace.make_aspace_shelf(building / "standard")
            # asyncua looks for the shelf with Path.is_file(); the dbm.dumb backend (Python
            # builds without gdbm) writes only standard.dat/.dir, so leave a marker file.
            (building / "standard").touch(exist_ok=True)
            with contextlib.suppress(OSError):  # another process won the race: use theirs
                building.rename(folder)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return shelf


# --- certificates ------------------------------------------------------------------------------


def ensure_server_certificate(
    cert_dir: Path, *, name: str, application_uri: str, host: str
) -> tuple[Path, Path]:
    """``(certificate.der, key.pem)`` of controller ``name``; generated when missing (blocking)."""
    cert_path = cert_dir / f"{name}.der"
    key_path = cert_dir / f"{name}.key.pem"
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    cert_dir.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    alt_names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(application_uri),
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname()),
    ]
    with contextlib.suppress(ValueError):
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        f"streetlight virtual controller {name}",
        {"organizationName": "streetlight device simulator"},
        alt_names,
        extended=[ExtendedKeyUsageOID.SERVER_AUTH],
        days=365,
    )
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    return cert_path, key_path


_SECURITY: Mapping[Security, ua.SecurityPolicyType] = {
    Security.NONE: ua.SecurityPolicyType.NoSecurity,
    Security.BASIC256SHA256_SIGN: ua.SecurityPolicyType.Basic256Sha256_Sign,
    Security.BASIC256SHA256_SIGN_AND_ENCRYPT: ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.closing(socket.socket(family, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --- the controller ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Point:
    role: PointRole
    spec: PointSpec
    node_ids: tuple[ua.NodeId, ...]


class VirtualController:
    """A virtual lamp controller: an asyncua server for ``config.lamps`` (see the module doc).

    Use as an async context manager::

        async with VirtualController(config, scheme=scheme) as cabinet:
            print(cabinet.endpoint, cabinet.node_ids["L001"]["level"])
            cabinet.fail_lamp("L001")
            await cabinet.drop_off(); await cabinet.come_back()

    ``cert_dir`` holds the server certificate (generated when missing; required unless the
    security is ``None``); ``trusted_clients_dir``, when given, is the only source of client
    certificates the server accepts. ``cache_dir`` holds the standard address space shelf.
    ``clock`` is monotonic seconds (the fades' time base); ``wall_ns`` is the controller's
    UTC clock, epoch ns, which stamps its telemetry (a simulated clock in a simulated night).
    """

    def __init__(
        self,
        config: ControllerConfig,
        *,
        scheme: PointScheme,
        cert_dir: Path | None = None,
        trusted_clients_dir: Path | None = None,
        cache_dir: Path | None = None,
        clock: Clock = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        curve: DriverCurve = DEFAULT_CURVE,
    ) -> None:
        if config.security is not Security.NONE and cert_dir is None:
            raise ValueError(
                f"controller {config.name!r} uses {config.security}: give cert_dir, the folder "
                "where its server certificate is kept (it is generated there when missing)"
            )
        if trusted_clients_dir is not None and not trusted_clients_dir.is_dir():
            raise ValueError(
                f"controller {config.name!r}: trusted_clients_dir {trusted_clients_dir} is not "
                "a folder; create it and put the client certificates (DER or PEM) in it"
            )
        self.config = config
        self.scheme = scheme
        self._cert_dir = cert_dir
        self._trusted_dir = trusted_clients_dir
        self._cache_dir = cache_dir
        self._clock = clock
        self._wall_ns = wall_ns
        self._curve = curve
        self.application_uri = f"urn:streetlight:virtual-controller:{config.name}"
        self.bank = LampBank(
            config.lamps.lamp_ids(),
            rated_power_w=config.rated_power_w,
            standby_power_w=config.standby_power_w,
            initial_level_frac=config.initial_level_frac,
            default_ramp_s=config.default_ramp_s,
            now_s=clock(),
            curve=curve,
            name=config.name,
        )
        self._port = config.port
        self._server: Server | None = None
        self._namespace_index: int | None = None
        self._points: dict[PointRole, _Point] = {}
        self._published: dict[PointRole, F64] = {}
        self._last_energy_s = -math.inf
        self._stack: contextlib.AsyncExitStack | None = None
        self._tick_task: asyncio.Task[None] | None = None
        # Held while the server is (re)built or stopped, and while a tick publishes.
        self._server_lock = asyncio.Lock()
        self.certificate_path: Path | None = None
        self.writes_total = 0
        self.ticks_total = 0

    # -- lifecycle --

    async def __aenter__(self) -> Self:
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._start_server(first=True)
            stack.push_async_callback(self._stop_server)
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            self._tick_task = tasks.create_task(
                self._tick_loop(), name=f"controller-{self.config.name}-fade"
            )
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._tick_task is not None:
            self._tick_task.cancel()
        stack, self._stack = self._stack, None
        if stack is not None:
            # Not the body's exception: a TaskGroup would wrap it in an ExceptionGroup. Only a
            # failed background task raises here (it is also why the body was cancelled).
            await stack.aclose()
        return None

    # -- public view --

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        host = self.config.host
        netloc = f"[{host}]" if ":" in host else host
        return f"opc.tcp://{netloc}:{self._port}{self.config.endpoint_path()}"

    @property
    def online(self) -> bool:
        return self._server is not None

    @property
    def namespace_index(self) -> int:
        if self._namespace_index is None:
            raise DeviceError(f"controller {self.name!r} has not started yet")
        return self._namespace_index

    @property
    def lamp_ids(self) -> tuple[str, ...]:
        return self.bank.lamp_ids

    @property
    def node_ids(self) -> dict[str, dict[str, str]]:
        """``{lamp_id: {role: node id string}}`` for every configured point."""
        ns = self.namespace_index
        return {
            lamp: {str(role): nid for role, nid in self.scheme.node_ids(lamp, ns).items()}
            for lamp in self.bank.lamp_ids
        }

    def lamp(self, lamp_id: str) -> LampState:
        """The lamp's state now (internal units)."""
        self.bank.advance(self._clock())
        return self.bank.state(self.bank.index(lamp_id))

    # -- faults and local commands --

    def fail_lamp(self, lamp_id: str, failed: bool = True) -> None:
        """Lamp failure (``failed=False`` repairs it): no light, standby power, status bit."""
        self.bank.set_failed(self.bank.index(lamp_id), failed, self._clock())

    def day_burner(self, lamp_id: str, on: bool = True) -> None:
        """Day-burner: the lamp burns at full output whatever its setpoint, status bit."""
        self.bank.set_day_burner(self.bank.index(lamp_id), on, self._clock())

    def comms_fault(self, lamp_id: str, on: bool = True) -> None:
        """The lamp's node stops hearing the cabinet: it holds its level, status bit."""
        self.bank.set_comms_fault(self.bank.index(lamp_id), on, self._clock())

    def command(self, lamp_id: str, level_frac: float, ramp_s: float | None = None) -> None:
        """A local command, as if written by a client (published on the next tick)."""
        k = self.bank.index(lamp_id)
        if ramp_s is not None:
            self.bank.set_ramp(k, ramp_s)
        self.bank.command(k, level_frac, self._clock())

    async def drop_off(self) -> None:
        """Stop the server: connections, sessions and subscriptions go; the lamps keep state."""
        await self._stop_server()

    async def come_back(self) -> None:
        """Start a fresh server on the same port and endpoint with the lamps' current state."""
        await self._start_server(first=False)

    # -- server --

    async def _start_server(self, *, first: bool) -> None:
        shelf = await asyncio.to_thread(standard_address_space_shelf, self._cache_dir)
        async with self._server_lock:
            if self._server is None:
                await self._start_server_locked(shelf, first=first)

    async def _start_server_locked(self, shelf: Path, *, first: bool) -> None:
        attempts = 3 if first and self.config.port == 0 else 1
        for attempt in range(attempts):
            if not self._port:
                self._port = _free_port(self.config.host)
            server = await self._build_server(shelf)
            try:
                await server.start()
            except OSError as err:
                with contextlib.suppress(Exception):
                    await server.stop()
                if attempt + 1 < attempts:  # the free port was taken in between: pick another
                    self._port = 0
                    continue
                raise ControllerStartError(
                    self.name,
                    f"cannot listen on {self.config.host}:{self._port} ({err.strerror}); "
                    "choose another port or 0 for a free one",
                ) from err
            self._server = server
            _log.info("controller %s online at %s", self.name, self.endpoint)
            return

    async def _stop_server(self) -> None:
        async with self._server_lock:
            server, self._server = self._server, None
            if server is not None:
                await self._stop(server)

    async def _stop(self, server: Server) -> None:
        await server.stop()
        # Sessions with subscriptions outlive their connection in asyncua (OPC 10000-4 6.7,
        # for transfer); a restarted controller has none, so close them with their server.
        for session in list(server.iserver._external_sessions.values()):
            await session.close_session(True)
        _log.info("controller %s offline", self.name)

    async def _build_server(self, shelf: Path) -> Server:
        server = Server()
        await server.init(shelf)
        server.set_server_name(f"streetlight virtual controller {self.name}")
        await server.set_application_uri(self.application_uri)
        server.set_endpoint(self.endpoint)
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        server.set_security_policy([_SECURITY[self.config.security]])
        if self.config.security is not Security.NONE:
            assert self._cert_dir is not None
            cert_path, key_path = await asyncio.to_thread(
                ensure_server_certificate,
                self._cert_dir,
                name=self.name,
                application_uri=self.application_uri,
                host=self.config.host,
            )
            await server.load_certificate(str(cert_path))
            await server.load_private_key(str(key_path))
            self.certificate_path = cert_path
            if self._trusted_dir is not None:
                store = TrustStore([self._trusted_dir], [])
                await store.load()
                options = (
                    CertificateValidatorOptions.TRUSTED_VALIDATION
                    | CertificateValidatorOptions.PEER_CLIENT
                )
                server.set_certificate_validator(CertificateValidator(options, store))
        ns = await server.register_namespace(self.scheme.namespace_uri)
        self._check_namespaces(ns)
        self._namespace_index = ns
        await self._add_nodes(server, ns)
        return server

    def _check_namespaces(self, ns: int) -> None:
        templates = {str(role): spec.node_id for role, spec in self.scheme.points().items()}
        templates["lamp_object"] = self.scheme.object_template()
        for what, template in templates.items():
            if not template.startswith("ns={ns};"):
                literal, _ = split_node_id(template.format(lamp="x", ns=ns))
                if literal != ns:
                    raise ControllerStartError(
                        self.name,
                        f"scheme {self.scheme.name!r} puts {what} in ns={literal}, but "
                        f"{self.scheme.namespace_uri!r} is ns={ns} on this server; write "
                        f"'ns={ns};...' or 'ns={{ns}};...' in the template",
                    )

    async def _add_nodes(self, server: Server, ns: int) -> None:
        bank = self.bank
        folder = _string_node(self.name, ns)
        items = [_object_item(folder, _numeric_node(ObjectIds.ObjectsFolder), self.name, True)]
        self._points = {}
        self._published = {}
        values = self._wire_values()
        for role, spec in self.scheme.points().items():
            ids = tuple(
                _string_node(split_node_id(spec.node_id.format(lamp=lamp, ns=ns))[1], ns)
                for lamp in bank.lamp_ids
            )
            self._points[role] = _Point(role, spec, ids)
            self._published[role] = values[role].copy()
        object_template = self.scheme.object_template()
        for k, lamp in enumerate(bank.lamp_ids):
            obj = _string_node(split_node_id(object_template.format(lamp=lamp, ns=ns))[1], ns)
            items.append(_object_item(obj, folder, lamp, False))
            for role, point in self._points.items():
                items.append(
                    _variable_item(
                        point.node_ids[k],
                        obj,
                        point.spec,
                        role,
                        point.spec.name_of(point.node_ids[k].to_string()),
                        float(values[role][k]),
                    )
                )
        results = await server.nodes.objects.session.add_nodes(items)
        for item, result in zip(items, results, strict=True):
            if not result.StatusCode.is_good():
                raise ControllerStartError(
                    self.name,
                    f"cannot create node {item.RequestedNewNodeId.to_string()} "
                    f"({result.StatusCode.name}); are two node id templates rendering the same id?",
                )
        for role in (PointRole.SETPOINT, PointRole.RAMP_TIME):
            if role in self._points:
                for k, nodeid in enumerate(self._points[role].node_ids):
                    server.set_attribute_value_setter(nodeid, self._setter(role, k))
        self._last_energy_s = self._clock()

    def _wire_values(self) -> dict[PointRole, F64]:
        bank = self.bank
        internal: dict[PointRole, npt.ArrayLike] = {
            PointRole.SETPOINT: bank.setpoint_frac,
            PointRole.RAMP_TIME: bank.ramp_s,
            PointRole.LEVEL: bank.level_frac,
            PointRole.POWER: bank.power_w,
            PointRole.ENERGY: bank.energy_wh,
        }
        out: dict[PointRole, F64] = {
            role: encode_array(spec, internal[role])
            for role, spec in self.scheme.points().items()
            if role is not PointRole.STATUS
        }
        if self.scheme.status is not None:
            out[PointRole.STATUS] = status_word(bank.status, self.scheme)
        return out

    def _setter(
        self, role: PointRole, k: int
    ) -> Callable[[NodeData, AttributeIds, ua.DataValue], None]:
        spec = self._points[role].spec

        def setter(node: NodeData, attr: AttributeIds, value: ua.DataValue) -> None:
            wire = value.Value.Value if value.Value is not None else None
            if isinstance(wire, bool) or not isinstance(wire, int | float):
                raise ServiceError(StatusCodes.BadTypeMismatch)
            try:
                if role is PointRole.SETPOINT:
                    self.bank.command(k, spec.decode(wire), self._clock())
                    internal = self.bank.setpoint_frac[k]
                else:
                    self.bank.set_ramp(k, spec.decode(wire))
                    internal = self.bank.ramp_s[k]
            except ValueError:
                # A setter cannot return a per-item status: the whole Write request fails.
                raise ServiceError(StatusCodes.BadOutOfRange) from None
            now = ua.DateTime.now(dt.UTC)
            node.attributes[attr].value = dataclasses.replace(
                value,
                SourceTimestamp=value.SourceTimestamp or now,
                ServerTimestamp=value.ServerTimestamp or now,
            )
            # What the next tick would publish, so that the write is not echoed back.
            self._published[role][k] = float(encode_array(spec, [internal])[0])

        return setter

    # -- the fade task --

    async def _tick_loop(self) -> None:
        period = self.config.tick_s
        next_s = self._clock()
        while True:
            next_s += period
            await asyncio.sleep(max(0.0, next_s - self._clock()))
            now_s = self._clock()
            if now_s - next_s > 10 * period:  # the loop stalled: do not try to catch up
                next_s = now_s
            self.bank.advance(now_s)
            self.ticks_total += 1
            async with self._server_lock:
                if self._server is not None:
                    await self._publish(self._server, now_s)

    async def _publish(self, server: Server, now_s: float) -> None:
        values = self._wire_values()
        energy_due = now_s - self._last_energy_s >= self.config.energy_publish_s
        # The controller's own clock: a simulated night stamps telemetry in simulated time.
        stamp = ua.DateTime.fromtimestamp(self._wall_ns() / 1e9, dt.UTC)
        for role, point in self._points.items():
            if role is PointRole.ENERGY and not energy_due:
                continue
            published = self._published[role]
            changed = np.flatnonzero(values[role] != published)
            for k in changed.tolist():
                wire = float(values[role][k])
                await server.write_attribute_value(
                    point.node_ids[k],
                    ua.DataValue(
                        _variant(point.spec, wire), SourceTimestamp=stamp, ServerTimestamp=stamp
                    ),
                )
                published[k] = wire
            self.writes_total += len(changed)
        if energy_due:
            self._last_energy_s = now_s


def _string_node(text: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(text), ua.Int16(ns))


def _numeric_node(identifier: int) -> ua.NodeId:
    return ua.NodeId(ua.Int32(identifier))


def _object_item(nodeid: ua.NodeId, parent: ua.NodeId, name: str, folder: bool) -> ua.AddNodesItem:
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nodeid
    item.BrowseName = ua.QualifiedName(name, nodeid.NamespaceIndex)
    item.NodeClass = ua.NodeClass.Object
    item.ParentNodeId = parent
    item.ReferenceTypeId = _numeric_node(ObjectIds.Organizes)
    item.TypeDefinition = _numeric_node(
        ObjectIds.FolderType if folder else ObjectIds.BaseObjectType
    )
    attrs = ua.ObjectAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    attrs.Description = ua.LocalizedText(name)
    attrs.EventNotifier = 0
    item.NodeAttributes = attrs
    return item


def _variable_item(
    nodeid: ua.NodeId,
    parent: ua.NodeId,
    spec: PointSpec,
    role: PointRole,
    name: str,
    wire: float,
) -> ua.AddNodesItem:
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nodeid
    item.BrowseName = ua.QualifiedName(name, nodeid.NamespaceIndex)
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = parent
    item.ReferenceTypeId = _numeric_node(ObjectIds.HasComponent)
    item.TypeDefinition = _numeric_node(ObjectIds.BaseDataVariableType)
    variant = _variant(spec, wire)
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    unit = INTERNAL_UNITS[role] if spec.scale == 1.0 else f"{INTERNAL_UNITS[role]} x {spec.scale:g}"
    attrs.Description = ua.LocalizedText(f"{role} ({unit})")
    attrs.DataType = _numeric_node(variant.VariantType.value)
    attrs.Value = variant
    attrs.ValueRank = ua.ValueRank.Scalar
    attrs.WriteMask = 0
    attrs.UserWriteMask = 0
    attrs.Historizing = False
    access = ua.AccessLevel.CurrentRead.mask
    if spec.writable:
        access |= ua.AccessLevel.CurrentWrite.mask
    attrs.AccessLevel = access
    attrs.UserAccessLevel = access
    item.NodeAttributes = attrs
    return item
