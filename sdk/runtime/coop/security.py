"""Fleet signing of CPMs (Ed25519, via ``cryptography``) and the receive-side message guard.

A signed message is ``body || signature``: ``body`` is the wire-codec output (``wire.encode``) and
the 64-byte Ed25519 signature covers all of it — header included, so sender id, sequence number and
timestamp cannot be changed without detection. Each device holds its own private key and the public
keys of every fleet member; the sender id in the header selects the public key to verify with.

Key files (written by :func:`generate_fleet`, read by :meth:`FleetKeys.load`):
``device_<id>.key.pem`` (PKCS#8 private key, mode 0600) and ``device_<id>.pub.pem``
(SubjectPublicKeyInfo). Raw 32-byte keys (``device_<id>.key`` / ``device_<id>.pub``) load too.

:class:`MessageGuard` is the single gate in front of fusion: every byte string from the network goes
through :meth:`MessageGuard.admit`, which never raises on bad input; it returns the decoded CPM or
``None`` and counts the drop under a reason code.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import wire
from .messages import CPM

__all__ = ["SIGNATURE_BYTES", "SecurityError", "NoPrivateKeyError", "FleetKeys", "generate_fleet",
           "load_private_key", "load_public_key", "GuardConfig", "MessageGuard", "value_problem",
           "DROP_REASONS"]

SIGNATURE_BYTES = 64

DROP_REASONS = ("truncated", "bad_magic", "unknown_version", "unknown_flags", "bad_length",
                "bad_value", "out_of_range", "too_many_items", "unsigned", "unknown_sender",
                "bad_signature", "replay", "stale", "future", "flood", "internal_error")
"""Every reason under which :class:`MessageGuard` drops a message (the keys of ``dropped``)."""


class SecurityError(Exception):
    """Signing or verification failed; ``reason`` is a machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class NoPrivateKeyError(SecurityError):
    """This device has no private key configured, so it must not publish."""

    def __init__(self, detail: str) -> None:
        super().__init__("no_private_key", detail)


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PEM (PKCS#8) or raw 32-byte file."""
    path = Path(path)
    data = path.read_bytes()
    if path.stat().st_mode & 0o077:
        warnings.warn(f"private key {path} is readable by group/others (mode "
                      f"{path.stat().st_mode & 0o777:o}); chmod 600 it", stacklevel=2)
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SecurityError("bad_key", f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key from a PEM (SubjectPublicKeyInfo) or raw 32-byte file."""
    data = Path(path).read_bytes()
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise SecurityError("bad_key", f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def _device_id_from_name(path: Path) -> int:
    stem = path.name.split(".")[0]  # device_<id>
    try:
        return int(stem.removeprefix("device_"))
    except ValueError:
        raise SecurityError("bad_key", f"key file {path} is not named device_<id>.(key|pub)[.pem]") from None


@dataclass
class FleetKeys:
    """This device's signing key (or ``None`` for a listen-only node) plus the fleet's public keys."""
    device_id: int | None
    private_key: Ed25519PrivateKey | None
    public_keys: dict[int, Ed25519PublicKey] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: str | Path, device_id: int | None = None) -> "FleetKeys":
        """All ``device_*.pub[.pem]`` in ``directory`` plus, if ``device_id`` is given, its private key.

        Raises :class:`NoPrivateKeyError` when ``device_id`` is given but its key file is missing.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise SecurityError("no_keys", f"fleet key directory {directory} does not exist")
        public = {}
        for path in sorted(directory.glob("device_*.pub*")):
            public[_device_id_from_name(path)] = load_public_key(path)
        private = None
        if device_id is not None:
            candidates = [directory / f"device_{device_id}.key.pem", directory / f"device_{device_id}.key"]
            found = [p for p in candidates if p.exists()]
            if not found:
                raise NoPrivateKeyError(f"no private key for device {device_id} in {directory} "
                                        f"(expected {candidates[0].name})")
            private = load_private_key(found[0])
        return cls(device_id, private, public)

    @property
    def can_sign(self) -> bool:
        return self.private_key is not None

    def sign(self, body: bytes) -> bytes:
        """``body || Ed25519(body)``. Raises :class:`NoPrivateKeyError` without a private key."""
        if self.private_key is None:
            raise NoPrivateKeyError(f"device {self.device_id} has no private key configured; "
                                    f"it cannot sign (use FleetKeys.load(dir, device_id) or "
                                    f"generate_fleet)")
        return bytes(body) + self.private_key.sign(bytes(body))

    def verify(self, signed: bytes) -> bytes:
        """Check the trailer signature against the header's sender; returns the body.

        Raises :class:`SecurityError` (``unsigned``, ``unknown_sender``, ``bad_signature``,
        ``truncated``, ``bad_length``) or :class:`wire.WireError` for an unreadable header.
        """
        signed = bytes(signed)
        head = wire.peek_header(signed)
        n = wire.body_length(signed)
        if len(signed) == n:
            raise SecurityError("unsigned", f"message from sender {head.sender_id} carries no signature")
        if len(signed) < n + SIGNATURE_BYTES:
            raise SecurityError("truncated", f"{len(signed)} bytes, body {n} + signature "
                                             f"{SIGNATURE_BYTES} expected")
        if len(signed) > n + SIGNATURE_BYTES:
            raise SecurityError("bad_length", f"{len(signed) - n - SIGNATURE_BYTES} bytes after "
                                              f"the signature")
        key = self.public_keys.get(head.sender_id)
        if key is None:
            raise SecurityError("unknown_sender", f"sender {head.sender_id} is not in the fleet")
        try:
            key.verify(signed[n:], signed[:n])
        except InvalidSignature:
            raise SecurityError("bad_signature", f"signature of sender {head.sender_id} seq "
                                                 f"{head.seq} does not verify") from None
        return signed[:n]


def generate_fleet(n: int, directory: str | Path, first_id: int = 0) -> list[int]:
    """Create Ed25519 key pairs for devices ``first_id .. first_id + n - 1`` under ``directory``.

    Refuses to overwrite existing key files (a fleet key is not something to lose by accident).
    """
    if n < 1:
        raise ValueError(f"n = {n}: a fleet needs at least one device")
    if first_id < 0 or first_id + n - 1 > 0xFFFF:
        raise ValueError(f"device ids {first_id}..{first_id + n - 1} do not fit in 0..65535")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ids = list(range(first_id, first_id + n))
    for device_id in ids:
        key_path = directory / f"device_{device_id}.key.pem"
        pub_path = directory / f"device_{device_id}.pub.pem"
        if key_path.exists() or pub_path.exists():
            raise FileExistsError(f"{key_path} or {pub_path} already exists; not overwriting fleet keys")
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        key_path.touch(mode=0o600)
        key_path.write_bytes(pem)
        pub_path.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return ids


@dataclass(frozen=True)
class GuardConfig:
    """Receive-side limits. Times in seconds, distances in metres."""
    max_age_s: float = 1.0
    """Messages whose capture time is older than this are ``stale`` (a CPM describes a moment)."""
    max_future_s: float = 0.2
    """Allowed clock skew: capture times further ahead of the receiver clock are ``future``."""
    rate_hz: float = 30.0
    """Sustained messages per second per sender (token bucket refill rate)."""
    burst: int = 10
    """Token bucket depth: short bursts above ``rate_hz`` are tolerated up to this many messages."""
    max_abs_pose_m: float = 1e5
    """Sender poses further than this from the site origin are absurd (``bad_value``)."""
    max_range_m: float = 200.0
    """Objects / landmarks further than this from their sender are absurd (``bad_value``)."""

    def __post_init__(self) -> None:
        for name in ("max_age_s", "max_future_s", "rate_hz", "max_abs_pose_m", "max_range_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"GuardConfig.{name} = {value!r} must be a positive finite number")
        if self.burst < 1:
            raise ValueError(f"GuardConfig.burst = {self.burst} must be >= 1")


def value_problem(cpm: CPM, config: GuardConfig = GuardConfig()) -> str | None:
    """Why ``cpm``'s numbers are unusable (NaN, absurd pose or ranges), or ``None`` when sane.

    The wire format cannot carry NaN, but this check also guards CPMs that arrive by other paths
    (simulation, tests) and enforces site-specific limits tighter than the format's.
    """
    p = cpm.pose
    if not all(math.isfinite(v) for v in (p.x, p.y, p.heading)):
        return f"pose ({p.x}, {p.y}, {p.heading}) is not finite"
    if max(abs(p.x), abs(p.y)) > config.max_abs_pose_m:
        return f"pose ({p.x:.1f}, {p.y:.1f}) m is beyond max_abs_pose_m={config.max_abs_pose_m:g}"
    for kind, items in (("object", cpm.objects), ("landmark", cpm.landmarks)):
        for i, item in enumerate(items):
            if not (math.isfinite(item.x) and math.isfinite(item.y)):
                return f"{kind} {i} position ({item.x}, {item.y}) is not finite"
            if math.hypot(item.x, item.y) > config.max_range_m:
                return (f"{kind} {i} at {math.hypot(item.x, item.y):.1f} m is beyond "
                        f"max_range_m={config.max_range_m:g}")
    return None


@dataclass
class _SenderState:
    last_seq: int
    last_timestamp_ns: int
    tokens: float
    refill_ns: int


class MessageGuard:
    """Admit authentic, fresh, in-order, sane CPMs; count everything else by reason.

    Check order (cheapest first, and so that only authenticated messages touch per-sender state):
    header -> signature -> body decode -> value sanity -> age / future skew -> replay -> flood.

    Replay: a sender's ``seq`` must exceed the last accepted one. A sender that restarted (seq
    reset) is recognised by a capture time more than ``max_age_s`` after its last accepted message:
    a replay cannot fake that, because the timestamp is signed and anything older than
    ``max_age_s`` is already stale. Such re-synchronisations are counted in ``restarts``.

    Not thread-safe: one guard per receiving thread (the DDS subscriber owns one).
    """

    def __init__(self, keys: FleetKeys, config: GuardConfig | None = None,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.keys = keys
        self.config = config or GuardConfig()
        self.clock_ns = clock_ns
        self.received = 0
        self.accepted = 0
        self.restarts = 0
        self.dropped: dict[str, int] = {}
        self.last_drop: tuple[str, str] | None = None
        """(reason, detail) of the most recent drop, for logs."""
        self._senders: dict[int, _SenderState] = {}

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.last_drop = (reason, detail)

    def stats(self) -> dict:
        """``{"received", "accepted", "restarts", "dropped": {reason: n}}`` (a copy)."""
        return {"received": self.received, "accepted": self.accepted, "restarts": self.restarts,
                "dropped": dict(self.dropped)}

    def admit(self, signed: bytes, now_ns: int | None = None) -> CPM | None:
        """The decoded CPM if ``signed`` passes every check, else ``None`` (drop counted). Never raises."""
        self.received += 1
        try:
            return self._admit(signed, self.clock_ns() if now_ns is None else now_ns)
        except (wire.WireError, SecurityError) as exc:
            self._drop(exc.reason, exc.detail)
        except Exception as exc:  # noqa: BLE001 - hostile input must never stop the ego pipeline
            self._drop("internal_error", f"{type(exc).__name__}: {exc}")
        return None

    def _admit(self, signed: bytes, now_ns: int) -> CPM | None:
        cfg = self.config
        body = self.keys.verify(signed)
        cpm = wire.decode(body)
        problem = value_problem(cpm, cfg)
        if problem is not None:
            self._drop("bad_value", problem)
            return None
        age_ns = now_ns - cpm.timestamp_ns
        if age_ns > cfg.max_age_s * 1e9:
            self._drop("stale", f"sender {cpm.sender_id} seq {cpm.seq} is {age_ns / 1e9:.3f} s old")
            return None
        if -age_ns > cfg.max_future_s * 1e9:
            self._drop("future", f"sender {cpm.sender_id} seq {cpm.seq} is {-age_ns / 1e9:.3f} s "
                                 f"in the future")
            return None
        state = self._senders.get(cpm.sender_id)
        if state is None:
            state = _SenderState(-1, cpm.timestamp_ns, float(cfg.burst), now_ns)
            self._senders[cpm.sender_id] = state
        elif cpm.seq <= state.last_seq:
            if cpm.timestamp_ns > state.last_timestamp_ns + cfg.max_age_s * 1e9:
                self.restarts += 1
            else:
                self._drop("replay", f"sender {cpm.sender_id} seq {cpm.seq} <= last {state.last_seq}")
                return None
        # The sequence number is spent even if the flood check drops it, so it cannot be replayed.
        state.last_seq, state.last_timestamp_ns = cpm.seq, max(cpm.timestamp_ns, state.last_timestamp_ns)
        state.tokens = min(float(cfg.burst), state.tokens + max(0, now_ns - state.refill_ns) * 1e-9 * cfg.rate_hz)
        state.refill_ns = max(now_ns, state.refill_ns)
        if state.tokens < 1.0:
            self._drop("flood", f"sender {cpm.sender_id} exceeds {cfg.rate_hz:g} msg/s "
                                f"(burst {cfg.burst})")
            return None
        state.tokens -= 1.0
        self.accepted += 1
        return cpm
