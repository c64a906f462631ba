"""CPMs over Cyclone DDS: no-key refusal, two processes on loopback, two hosts in network namespaces.

Each test uses its own DDS domain derived from the pid, so concurrent test runs do not cross-talk.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sdk.runtime.coop.messages import CPM, Pose2D
from sdk.runtime.coop.security import FleetKeys, NoPrivateKeyError, generate_fleet
from cyclonedds.core import Policy

from sdk.runtime.coop.transport import (CPM_TOPIC, SHIPPED_CONFIG, CollectivePerception, CpmPublisher,
                                        CpmSubscriber, interface_config, live_cpm_qos)

REPO = Path(__file__).resolve().parents[3]
_DOMAIN_BASE = 10 + (os.getpid() * 7) % 180  # 10..189, one per test process; tests add 0..9

# A peer process: `sender` publishes valid CPMs interleaved with hostile samples; `receiver` takes
# for a while and prints its stats and the accepted (sender, seq) pairs as JSON.
PEER = textwrap.dedent("""
    import json, sys, time
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic
    from sdk.runtime.coop import wire
    from sdk.runtime.coop.messages import CPM, Landmark, Pose2D
    from sdk.runtime.coop.security import FleetKeys
    from sdk.runtime.coop.transport import (CpmPublisher, CpmSubscriber, CollectivePerception, Time,
                                            live_cpm_qos)
    role, domain, keydir, config, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    config = None if config == "shipped" else config
    if role == "sender":
        keys = FleetKeys.load(keydir, device_id=1)
        pub = CpmPublisher(1, keys, domain_id=domain, config=config)
        dp = DomainParticipant(domain)  # the domain is configured by the publisher above
        raw = DataWriter(dp, Topic(dp, "rt/prism/cpm", CollectivePerception), qos=live_cpm_qos(1))
        deadline = time.time() + 8
        while (pub.matched_subscribers() == 0 or not raw.get_matched_subscriptions()) \
                and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # let the reader's side of discovery settle too
        def sample(payload, sender=1, seq=0):
            raw.write(CollectivePerception(Time(0, 0), sender, seq, 1, payload))
        prev = None
        for seq in range(1, n + 1):
            cpm = CPM(1, seq, time.time_ns(), Pose2D(10.0, 5.0, 0.1),
                      landmarks=[Landmark(float(seq), 2.0)])
            pub.publish(cpm)
            if seq % 5 == 0:
                signed = bytearray(keys.sign(wire.encode(cpm)))
                signed[40] ^= 0x01
                sample(bytes(signed), seq=seq)                        # tampered
                sample(prev, seq=seq - 1)                             # replayed
                sample(wire.encode(cpm), seq=seq)                     # unsigned
                sample(keys.sign(wire.encode(cpm)), sender=3, seq=seq)  # copies disagree
            prev = keys.sign(wire.encode(cpm))
            time.sleep(0.06)
        time.sleep(0.5)
    else:
        sub = CpmSubscriber(FleetKeys.load(keydir), domain_id=domain, config=config)
        got, deadline, last = [], time.time() + n, None
        while time.time() < deadline and (last is None or time.time() - last < 1.5):
            new = sub.take(0.2)
            got += [(c.sender_id, c.seq) for c in new]
            last = time.time() if new else last
        print(json.dumps({"stats": sub.stats, "got": got}), flush=True)
""")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CYCLONEDDS_URI"}
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fleet")
    generate_fleet(3, directory)
    return directory


@pytest.fixture(autouse=True)
def _no_user_dds_config(monkeypatch):
    monkeypatch.delenv("CYCLONEDDS_URI", raising=False)


def test_listen_only_device_refuses_to_publish(fleet_dir):
    pub = CpmPublisher(0, FleetKeys.load(fleet_dir), domain_id=_DOMAIN_BASE)
    with pytest.raises(NoPrivateKeyError, match="no private key configured and refuses to publish"):
        pub.publish(CPM(0, 1, time.time_ns(), Pose2D(0.0, 0.0, 0.0)))
    assert pub.published == 0


def test_publisher_checks_sender_and_sequence(fleet_dir):
    pub = CpmPublisher(0, FleetKeys.load(fleet_dir, device_id=0), domain_id=_DOMAIN_BASE)
    assert pub.publish(CPM(0, 5, time.time_ns(), Pose2D(0.0, 0.0, 0.0))) == 35 + 64
    with pytest.raises(ValueError, match="not above the last published 5"):
        pub.publish(CPM(0, 5, time.time_ns(), Pose2D(0.0, 0.0, 0.0)))
    with pytest.raises(ValueError, match="sender_id 2"):
        pub.publish(CPM(2, 6, time.time_ns(), Pose2D(0.0, 0.0, 0.0)))


def test_live_qos_is_best_effort_keep_last_xcdr1():
    qos = live_cpm_qos()
    assert qos[Policy.Reliability] == Policy.Reliability.BestEffort
    assert qos[Policy.History] == Policy.History.KeepLast(1)
    assert qos[Policy.Durability] == Policy.Durability.Volatile
    assert qos[Policy.DataRepresentation] == Policy.DataRepresentation(use_cdrv0_representation=True)


def test_type_and_topic_follow_ros2_naming():
    assert CPM_TOPIC == "rt/prism/cpm"
    assert CollectivePerception.__idl_typename__ == "prism_msgs::msg::dds_::CollectivePerception_"
    assert "MaxMessageSize" in SHIPPED_CONFIG.read_text()


def test_user_cyclonedds_uri_is_not_overridden_silently(fleet_dir, monkeypatch):
    monkeypatch.setenv("CYCLONEDDS_URI", str(SHIPPED_CONFIG))
    with pytest.warns(UserWarning, match="CYCLONEDDS_URI=.* is overridden for DDS domain"):
        CpmSubscriber(FleetKeys.load(fleet_dir), domain_id=_DOMAIN_BASE + 1,
                      config=interface_config("lo", peers=("127.0.0.1",), multicast=False))


def _check_receiver_result(result: dict, n: int) -> None:
    stats, got = result["stats"], [tuple(g) for g in result["got"]]
    assert got and set(got) <= {(1, s) for s in range(1, n + 1)}, got
    assert len(got) == len(set(got)), "a CPM was accepted twice"
    assert got == sorted(got), "accepted out of order"
    # Best-effort may lose a sample, but on one host nearly all arrive.
    assert len(got) >= 0.7 * n, stats
    dropped = stats["dropped"]
    assert set(dropped) <= {"bad_signature", "replay", "unsigned", "header_mismatch"}, dropped
    hostile = n // 5
    for reason in ("bad_signature", "replay", "unsigned", "header_mismatch"):
        assert 1 <= dropped.get(reason, 0) <= hostile, (reason, stats)
    assert stats["accepted"] == len(got)
    assert stats["received"] == stats["accepted"] + sum(dropped.values())


LOOPBACK_ONLY = interface_config("lo", peers=("127.0.0.1",), multicast=False)


@pytest.mark.parametrize("config", ["shipped", LOOPBACK_ONLY], ids=["shipped_config", "lo_unicast"])
def test_two_processes_on_one_host(fleet_dir, config):
    n = 20
    domain = _DOMAIN_BASE + (2 if config == "shipped" else 4)
    sender = subprocess.Popen([sys.executable, "-c", PEER, "sender", str(domain), str(fleet_dir),
                               config, str(n)], cwd=REPO, env=_env(), stderr=subprocess.PIPE)
    got: list[tuple[int, int]] = []
    sub = CpmSubscriber(FleetKeys.load(fleet_dir), domain_id=domain,
                        config=None if config == "shipped" else config)
    deadline = time.time() + 14
    while time.time() < deadline:
        got += [(c.sender_id, c.seq) for c in sub.take(0.2)]
        if sender.poll() is not None:
            got += [(c.sender_id, c.seq) for c in sub.take(0.3)]
            break
    sender.kill()
    _, err = sender.communicate()
    assert sender.returncode == 0, err.decode()
    _check_receiver_result({"stats": sub.stats, "got": got}, n)


NETNS_SCRIPT = textwrap.dedent("""
    set -e
    ip link set lo up
    unshare -n sleep 30 &
    HOST_B=$!
    sleep 0.2
    ip link add veth_a type veth peer name veth_b netns $HOST_B
    ip addr add 10.77.0.1/24 dev veth_a
    ip link set veth_a up
    nsenter -t $HOST_B -n sh -c 'ip link set lo up; ip addr add 10.77.0.2/24 dev veth_b; ip link set veth_b up'
    "$PY" -c "$PEER" receiver "$DOMAIN" "$KEYS" "$CFG_A" 9 > "$OUT" &
    RECV=$!
    nsenter -t $HOST_B -n "$PY" -c "$PEER" sender "$DOMAIN" "$KEYS" "$CFG_B" "$N"
    wait $RECV
    kill $HOST_B
""")


def test_two_hosts_in_network_namespaces(fleet_dir, tmp_path):
    """Receiver in one network namespace, sender in another, joined by a veth pair (10.77.0.0/24)."""
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed; cannot build namespace hosts")
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "add", "va", "type", "veth", "peer",
                            "name", "vb"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a user+network namespace with a veth pair here: "
                    f"`unshare -rn ip link add va type veth peer name vb` -> rc {probe.returncode}: "
                    f"{probe.stderr.strip()}")
    n = 20
    env = _env() | {"PY": sys.executable, "PEER": PEER, "DOMAIN": str(_DOMAIN_BASE + 3),
                    "KEYS": str(fleet_dir), "N": str(n), "OUT": str(tmp_path / "recv.json"),
                    "CFG_A": interface_config("veth_a"), "CFG_B": interface_config("veth_b")}
    run = subprocess.run(["unshare", "-rn", "bash", "-c", NETNS_SCRIPT], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=25)
    assert run.returncode == 0, run.stderr[-3000:]
    _check_receiver_result(json.loads((tmp_path / "recv.json").read_text()), n)
