"""CPM transport over Eclipse Cyclone DDS, laid out so that ROS 2 nodes can subscribe directly.

Topic and type follow the ROS 2 DDS naming: the ROS topic ``/prism/cpm`` is the DDS topic
``rt/prism/cpm`` and the ROS message ``prism_msgs/msg/CollectivePerception`` is the DDS type
``prism_msgs::msg::dds_::CollectivePerception_``. The equivalent ``.msg`` file for a ROS 2 package::

    # prism_msgs/msg/CollectivePerception.msg
    builtin_interfaces/Time stamp   # capture time (copy of the signed timestamp)
    uint16 sender_id                # copy of the signed sender id
    uint32 seq                      # copy of the signed sequence number
    uint8 schema_version            # wire schema of payload (sdk.runtime.coop.wire)
    uint8[] payload                 # signed wire bytes: body || Ed25519 signature

The header fields are plain copies for ROS tools (``ros2 topic echo``, rosbag filters); only the
signed ``payload`` is trusted, and a sample whose copies disagree with it is dropped
(``header_mismatch``).

QoS for live CPMs, chosen on purpose:

- **best-effort**: a CPM is worthless once the next frame's CPM exists; retransmitting a lost one
  (reliable) would only delay the newer one and stall a slow receiver's writers.
- **keep-last 1 on the writer**: never queue old frames behind a congested link.
- **keep-last ``reader_depth`` (default 32) on the reader**: the type is keyless (ROS 2 messages
  have no keys), so every sender shares one DDS instance; the reader's depth must cover one
  sample per fleet member between two ``take`` calls, or it would keep only the latest sender.
- **volatile**: a late joiner must not receive old CPMs.
- **XCDR1 data representation**: ROS 2's rmw_cyclonedds reads and writes plain CDR only; a
  writer offering only XCDR2 would not match a ROS 2 reader.

Not verified here against a live ROS 2 installation (none on this host): the type and topic
names, the field layout above and the QoS are what ROS 2 would need to match.

Configuration: ``config=None`` uses the user's ``CYCLONEDDS_URI`` when set (it is never
overridden silently) and otherwise the ``cyclonedds.xml`` shipped next to this module. A path or
XML string in ``config`` is applied to this process's domain; if ``CYCLONEDDS_URI`` is also set, a
warning says that it is being overridden for that domain.
"""
# No `from __future__ import annotations`: cyclonedds.idl resolves field types at runtime.

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cyclonedds.core import Policy, Qos, ReadCondition, SampleState, ViewState, InstanceState, WaitSet
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import int32, sequence, uint8, uint16, uint32
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from . import wire
from .messages import CPM
from .security import FleetKeys, GuardConfig, MessageGuard, NoPrivateKeyError

__all__ = ["CPM_TOPIC", "SHIPPED_CONFIG", "CollectivePerception", "Time", "CpmPublisher",
           "CpmSubscriber", "interface_config", "live_cpm_qos"]

log = logging.getLogger(__name__)

CPM_TOPIC = "rt/prism/cpm"
SHIPPED_CONFIG = Path(__file__).with_name("cyclonedds.xml")


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    """ROS 2 ``builtin_interfaces/Time``."""
    sec: int32
    nanosec: uint32


@dataclass
class CollectivePerception(IdlStruct, typename="prism_msgs::msg::dds_::CollectivePerception_"):
    """DDS sample of one signed CPM (see the module docstring for the ``.msg`` equivalent)."""
    stamp: Time
    sender_id: uint16
    seq: uint32
    schema_version: uint8
    payload: sequence[uint8]


def live_cpm_qos(history_depth: int = 1) -> Qos:
    """Best-effort, keep-last ``history_depth``, volatile (why: module docstring), and plain CDR
    (XCDR1) only, which is what ROS 2's rmw_cyclonedds offers and accepts."""
    return Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(history_depth),
               Policy.Durability.Volatile, Policy.DataRepresentation(use_cdrv0_representation=True))


def interface_config(interface: str, peers: tuple[str, ...] = (), multicast: bool = True) -> str:
    """A Cyclone XML configuration pinned to one network interface (e.g. a veth in a namespace).

    ``peers``: unicast discovery addresses, needed where multicast is off.
    """
    peer_xml = "".join(f'<Peer Address="{p}"/>' for p in peers)
    return ('<CycloneDDS><Domain Id="any"><General><Interfaces>'
            f'<NetworkInterface name="{interface}" multicast="{"true" if multicast else "false"}"/>'
            f'</Interfaces><AllowMulticast>{"default" if multicast else "false"}</AllowMulticast>'
            '<MaxMessageSize>1400B</MaxMessageSize></General>'
            '<Discovery><ParticipantIndex>auto</ParticipantIndex>'
            '<MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>'
            f'<Peers>{peer_xml}</Peers></Discovery></Domain></CycloneDDS>')


# One Domain object per domain id and process (Cyclone allows one configuration per domain).
_domains: dict[int, tuple[Domain | None, str]] = {}


def _join_domain(domain_id: int, config: str | Path | None) -> DomainParticipant:
    if not 0 <= domain_id <= 232:
        raise ValueError(f"domain_id {domain_id} is outside 0..232 (the RTPS port mapping's range)")
    user_uri = os.environ.get("CYCLONEDDS_URI")
    text = ""
    if config is None and user_uri:
        source = f"CYCLONEDDS_URI={user_uri}"
    else:
        if config is None:
            text, source = SHIPPED_CONFIG.read_text(), str(SHIPPED_CONFIG)
        elif isinstance(config, Path) or not str(config).lstrip().startswith("<"):
            path = Path(config)
            if not path.is_file():
                raise FileNotFoundError(f"Cyclone DDS config {path} does not exist")
            text, source = path.read_text(), str(path)
        else:
            text, source = str(config), "XML given as config="
        if user_uri:
            warnings.warn(f"CYCLONEDDS_URI={user_uri} is overridden for DDS domain {domain_id} by "
                          f"{source}", stacklevel=3)
    known = _domains.get(domain_id)
    if known is not None:
        if known[1] != source:
            raise ValueError(f"DDS domain {domain_id} is already configured in this process from "
                             f"{known[1]}; cannot reconfigure it from {source}")
    else:
        domain = Domain(domain_id, text) if text else None  # None: Cyclone reads CYCLONEDDS_URI
        _domains[domain_id] = (domain, source)
        log.info("DDS domain %d configured from %s", domain_id, source)
    return DomainParticipant(domain_id)


class CpmPublisher:
    """Signs and publishes this device's CPMs on the live CPM topic.

    ``publish`` raises :class:`NoPrivateKeyError` when ``keys`` has no private key: an unsigned CPM
    would be dropped by every receiver anyway, and silently sending nothing hides the mistake.
    """

    def __init__(self, device_id: int, keys: FleetKeys, domain_id: int = 0, topic: str = CPM_TOPIC,
                 config: str | Path | None = None) -> None:
        if keys.device_id is not None and keys.device_id != device_id:
            raise ValueError(f"FleetKeys belong to device {keys.device_id}, publisher is device {device_id}")
        self.device_id = device_id
        self.keys = keys
        self.topic = topic
        self._participant = _join_domain(domain_id, config)
        self._topic = Topic(self._participant, topic, CollectivePerception)
        self._writer = DataWriter(self._participant, self._topic, qos=live_cpm_qos(1))
        self._last_seq: int | None = None
        self.published = 0

    def publish(self, cpm: CPM) -> int:
        """Encode, sign and write ``cpm``; returns the signed payload size in bytes."""
        if not self.keys.can_sign:
            raise NoPrivateKeyError(f"device {self.device_id} has no private key configured and "
                                    f"refuses to publish on {self.topic}; load one with "
                                    f"FleetKeys.load(directory, device_id={self.device_id})")
        if cpm.sender_id != self.device_id:
            raise ValueError(f"CPM sender_id {cpm.sender_id} is not this publisher's device {self.device_id}")
        if self._last_seq is not None and cpm.seq <= self._last_seq:
            raise ValueError(f"CPM seq {cpm.seq} is not above the last published {self._last_seq}; "
                             f"receivers would drop it as a replay")
        signed = self.keys.sign(wire.encode(cpm))
        sec, nanosec = divmod(cpm.timestamp_ns, 1_000_000_000)
        self._writer.write(CollectivePerception(Time(min(sec, 2**31 - 1), nanosec), cpm.sender_id,
                                                cpm.seq, wire.SCHEMA_VERSION, signed))
        self._last_seq = cpm.seq
        self.published += 1
        return len(signed)

    def matched_subscribers(self) -> int:
        """How many readers currently match (useful to wait for discovery)."""
        return len(self._writer.get_matched_subscriptions())

    def close(self) -> None:
        self._participant = self._topic = self._writer = None  # Cyclone entities close on collection

    def __enter__(self) -> "CpmPublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CpmSubscriber:
    """Receives CPMs and lets only what :class:`MessageGuard` admits through.

    ``take`` never raises on bad network input; everything dropped is counted in ``stats``.
    """

    def __init__(self, keys: FleetKeys, guard: GuardConfig | None = None, domain_id: int = 0,
                 topic: str = CPM_TOPIC, config: str | Path | None = None,
                 on_message: Callable[[CPM], None] | None = None, reader_depth: int = 32) -> None:
        self.guard = MessageGuard(keys, guard)
        self.on_message = on_message
        self.reader_depth = reader_depth
        self._participant = _join_domain(domain_id, config)
        self._topic = Topic(self._participant, topic, CollectivePerception)
        self._reader = DataReader(self._participant, self._topic, qos=live_cpm_qos(reader_depth))
        self._condition = ReadCondition(self._reader, SampleState.Any | ViewState.Any | InstanceState.Any)
        self._waitset = WaitSet(self._participant)
        self._waitset.attach(self._condition)
        self._transport_drops: dict[str, int] = {}
        self.samples = 0

    @property
    def stats(self) -> dict:
        """``{"received", "accepted", "restarts", "dropped": {reason: n}}``; ``received`` counts
        DDS samples, including ones dropped before the guard (``header_mismatch``, ``undeserializable``)."""
        s = self.guard.stats()
        s["received"] = self.samples
        for reason, n in self._transport_drops.items():
            s["dropped"][reason] = s["dropped"].get(reason, 0) + n
        return s

    def _count(self, reason: str) -> None:
        self._transport_drops[reason] = self._transport_drops.get(reason, 0) + 1

    def take(self, timeout_s: float = 0.0) -> list[CPM]:
        """Accepted CPMs that arrived so far, waiting up to ``timeout_s`` for the first one."""
        if timeout_s > 0:
            self._waitset.wait(duration(seconds=timeout_s))
        try:
            samples = self._reader.take(N=self.reader_depth)
        except Exception as exc:  # noqa: BLE001 - a sample Cyclone cannot deserialize must not stop us
            self.samples += 1
            self._count("undeserializable")
            log.debug("dropping an undeserializable DDS sample: %s", exc)
            return []
        out = []
        for sample in samples:
            if not isinstance(sample, CollectivePerception):
                continue  # writer-gone / dispose notifications carry no data
            self.samples += 1
            payload = bytes(sample.payload)
            try:
                head = wire.peek_header(payload)
            except wire.WireError:
                head = None  # the guard counts the precise wire reason
            if head is not None and (head.sender_id, head.seq) != (sample.sender_id, sample.seq):
                self._count("header_mismatch")  # plain copies disagree with the (signed) payload
                continue
            cpm = self.guard.admit(payload)
            if cpm is None:
                continue
            out.append(cpm)
            if self.on_message is not None:
                self.on_message(cpm)
        return out

    def close(self) -> None:
        self._waitset = self._condition = self._reader = self._topic = self._participant = None

    def __enter__(self) -> "CpmSubscriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
