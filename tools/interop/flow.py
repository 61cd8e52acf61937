"""One round of the interop flow against a real ChirpStack, with gatewayd publishing in one
encoding (binary protobuf or JSON): the gateway is seen; ABP uplinks arrive decrypted with
their FCnt; an OTAA join-accept comes back at tmst + 5 s; API-queued downlinks go out at
RX1 (tmst + 1 s), at RX2 after a TOO_LATE, and at once for Class C, each becoming a `txack`
event; the gateway stats count every transmission; ChirpStack logs no ERROR."""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
from dataclasses import dataclass, field

from gwmp import Forwarder, Transmission, Uplink
from provision import metric_total
from lorawan import Session, data_uplink, join_request, read_data_downlink, read_join_accept
from watch import (ConnState, DownlinkTxAck, GatewayStats, Message, TxAckStatus, Watch,
                   decode_gateway, integration_event)

RX1 = 1_000_000
RX2 = 2_000_000
JOIN_ACCEPT = 5_000_000
CHANNELS = (868.1, 868.3, 868.5)


@dataclass
class Device:
    name: str
    dev_eui: str
    session: Session | None = None
    app_key: bytes = b""
    fcnt: int = 0


@dataclass
class Context:
    """What every round shares: the services, the watcher, the API client, the report."""

    report: object
    services: object
    watch: Watch
    cs: object
    chirpstack: object  # its Proc
    gatewayd_bin: str
    mqtt_port: int
    tenant: str
    app: str
    profile_abp: str
    profile_abp_c: str
    profile_otaa: str
    stats_secs: int = 2
    receipt_secs: int = 3
    timeout: float = 20.0


def _hex(n: int, width: int) -> str:
    return f"{n:0{width}x}"


def _to(d: Device):
    """Matches a data downlink to `d`'s DevAddr."""
    addr = d.session.dev_addr.to_bytes(4, "little")
    return lambda phy: len(phy) >= 12 and phy[0] >> 5 in (3, 5) and phy[1:5] == addr


@dataclass
class Round:
    ctx: Context
    index: int
    json_mode: bool
    devices: dict = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "JSON" if self.json_mode else "binary"

    def name(self, what: str) -> str:
        return f"[{self.mode}] {what}"

    def check(self, what: str, ok: bool, detail: str) -> bool:
        return self.ctx.report.check(self.name(what), ok, detail)

    # Set-up.

    def provision(self) -> None:
        c, i = self.ctx, self.index
        self.gateway_id = f"0016c001f15000{i:02x}"
        c.cs.create_gateway(c.tenant, self.gateway_id, c.stats_secs)
        for n, (name, profile) in enumerate((("abp-a", c.profile_abp), ("abp-c", c.profile_abp_c))):
            d = Device(name, f"70b3d57ed0{i:02x}00{n:02x}",
                       Session(0x01AB0000 | (i << 8) | n, os.urandom(16), os.urandom(16)))
            c.cs.create_device(c.app, profile, d.dev_eui, f"{name}-{i}")
            c.cs.activate_abp(d.dev_eui, d.session.dev_addr, d.session.nwk_s_key,
                              d.session.app_s_key)
            self.devices[name] = d
        otaa = Device("otaa", f"70b3d57ed0{i:02x}0100", app_key=os.urandom(16))
        self.join_eui = "70b3d57ed0000000"
        c.cs.create_device(c.app, c.profile_otaa, otaa.dev_eui, f"otaa-{i}", self.join_eui)
        c.cs.set_otaa_key(otaa.dev_eui, otaa.app_key)
        self.devices["otaa"] = otaa

    def start(self) -> bool:
        c = self.ctx
        self.proc, port, self.config = c.services.gatewayd(
            c.gatewayd_bin, f"gatewayd-{self.mode.lower()}", c.mqtt_port,
            self.json_mode, c.stats_secs, c.receipt_secs)
        self.log_offset = len(c.chirpstack.log_text())
        self.fwd = Forwarder(bytes.fromhex(self.gateway_id), port)
        ok = self.fwd.wait_pull_ack(c.timeout)
        return self.check("gatewayd answers the packet forwarder", ok,
                          f"PULL_ACK on 127.0.0.1:{port}" if ok else
                          f"no PULL_ACK within {c.timeout:.0f} s; gatewayd log:\n"
                          f"{self.proc.log_tail()}")

    def stop(self) -> None:
        self.fwd.close()
        code = self.proc.stop()
        topic = f"eu868/gateway/{self.gateway_id}/state/conn"
        offline = self.ctx.watch.wait_for(
            lambda m: m.topic == topic and self._conn(m) == "OFFLINE", 5)
        self.check("gatewayd stops cleanly", code == 0 and bool(offline),
                   f"exit code {code}, OFFLINE on {topic}: {'yes' if offline else 'no'}")

    # Helpers.

    def _decode(self, kind, m: Message):
        """A gateway event in this round's encoding, or None if it does not decode."""
        try:
            return decode_gateway(kind, m, self.json_mode)
        except Exception:  # noqa: BLE001 (protobuf's and json_format's errors alike)
            return None

    def _conn(self, m: Message) -> str:
        c = self._decode(ConnState, m)
        return ConnState.State.Name(c.state) if c else "undecodable"

    def _gw_topic(self, event: str) -> str:
        return f"eu868/gateway/{self.gateway_id}/event/{event}"

    def _app_topic(self, d: Device, event: str) -> str:
        return f"application/{self.ctx.app}/device/{d.dev_eui}/event/{event}"

    def _device_logs(self, d: Device) -> str:
        logs = self.ctx.watch.snapshot(lambda m: m.topic == self._app_topic(d, "log"))
        return "; ".join(integration_event(m).get("description", "?") for m in logs[-3:])

    def send_data(self, d: Device, payload: bytes, fport: int = 2, freq: float | None = None,
                  ) -> Uplink:
        freq = freq or CHANNELS[d.fcnt % len(CHANNELS)]
        up = self.fwd.send_uplink(data_uplink(d.session, d.fcnt, fport, payload), freq)
        d.fcnt += 1
        return up

    def wait_up_event(self, d: Device, fcnt: int) -> dict | None:
        topic = self._app_topic(d, "up")
        found = self.ctx.watch.wait_for(
            lambda m: m.topic == topic and integration_event(m).get("fCnt", 0) == fcnt,
            self.ctx.timeout)
        return integration_event(found[0]) if found else None

    def wait_transmissions(self, after: int, match, count: int = 1) -> list[Transmission]:
        """The PULL_RESPs after the first `after` whose payload satisfies `match` (count of
        them, or fewer at the deadline): ChirpStack may send others (MAC commands)."""
        return self.fwd.wait_transmissions(after, match, count, self.ctx.timeout)

    def wait_transmission(self, after: int, match) -> Transmission | None:
        found = self.wait_transmissions(after, match)
        return found[0] if found else None

    # The flow.

    def run(self) -> None:
        if not self.start():
            return
        try:
            self.gateway_seen()
            self.abp_uplinks()
            self.otaa_join()
            self.downlink_rx1()
            self.downlink_rx2_after_too_late()
            self.downlink_class_c()
            self.stats()
            self.poc_and_log()
        finally:
            self.stop()

    def gateway_seen(self) -> None:
        c = self.ctx
        topic = f"eu868/gateway/{self.gateway_id}/state/conn"
        online = c.watch.wait_for(lambda m: m.topic == topic and self._conn(m) == "ONLINE",
                                  c.timeout)
        self.check("gatewayd says ONLINE", bool(online),
                   f"retained ONLINE on {topic}" if online else f"no ONLINE on {topic}")
        state = c.watch.wait_until(
            lambda: (s := c.cs.gateway_state(c.tenant, self.gateway_id)) == "ONLINE" and s,
            c.timeout) or c.cs.gateway_state(c.tenant, self.gateway_id)
        seen = c.cs.gateway(self.gateway_id).HasField("last_seen_at")
        self.check("ChirpStack sees the gateway", state == "ONLINE" and seen,
                   f"state {state}, last_seen_at {'set' if seen else 'unset'}")

    def abp_uplinks(self) -> None:
        """10 uplinks from two ABP devices, each waited for as ChirpStack's `up` event."""
        good, bad = 0, []
        for n in range(10):
            d = self.devices["abp-a" if n % 2 == 0 else "abp-c"]
            payload = f"interop uplink {n}".encode()
            fcnt = d.fcnt
            try:
                self.send_data(d, payload)
            except TimeoutError as e:
                bad.append(f"uplink {n}: {e}")
                continue
            ev = self.wait_up_event(d, fcnt)
            if ev is None:
                bad.append(f"{d.name} FCnt {fcnt}: no up event within {self.ctx.timeout:.0f} s"
                           f" (device log: {self._device_logs(d) or 'none'})")
                continue
            data = base64.b64decode(ev.get("data", ""))
            gws = [r.get("gatewayId") for r in ev.get("rxInfo", [])]
            if data != payload or ev.get("fPort", 0) != 2 or self.gateway_id not in gws:
                bad.append(f"{d.name} FCnt {fcnt}: data {data!r}, fPort {ev.get('fPort', 0)}, "
                           f"gateways {gws}")
                continue
            good += 1
        published = len(self.ctx.watch.snapshot(lambda m: m.topic == self._gw_topic("up")))
        self.check("ABP uplinks accepted with their FCnt and decrypted payload", good == 10,
                   f"{good}/10 (gatewayd published {published} on event/up)"
                   + ("; " + "; ".join(bad) if bad else ""))

    def otaa_join(self) -> None:
        c, d = self.ctx, self.devices["otaa"]
        dev_nonce = random.randrange(0x10000)
        before = len(self.fwd.transmissions)
        up = self.fwd.send_uplink(join_request(d.app_key, bytes.fromhex(self.join_eui),
                                               bytes.fromhex(d.dev_eui), dev_nonce), 868.3)
        t = self.wait_transmission(before, lambda phy: phy[:1] == b"\x20")
        if not self.check("OTAA join-accept comes back through gatewayd", t is not None,
                          "a PULL_RESP" if t else f"no PULL_RESP within {c.timeout:.0f} s "
                          f"(device log: {self._device_logs(d) or 'none'})"):
            return
        self._timing("join-accept at tmst + 5 s (RX1)", t, up, JOIN_ACCEPT, up.freq_mhz,
                     up.datr)
        try:
            ja = read_join_accept(d.app_key, dev_nonce, t.phy)
        except ValueError as e:
            self.check("join-accept decrypts with the AppKey", False, str(e))
            return
        self.check("join-accept decrypts with the AppKey", ja.mic_ok,
                   f"MIC {'ok' if ja.mic_ok else 'wrong'}, DevAddr {ja.dev_addr:08x}, "
                   f"RxDelay {ja.rx_delay}")
        join = c.watch.wait_for(lambda m: m.topic == self._app_topic(d, "join"), c.timeout)
        ev_addr = integration_event(join[0]).get("devAddr") if join else None
        self.check("ChirpStack's join event names the DevAddr", ev_addr == _hex(ja.dev_addr, 8),
                   f"join event devAddr {ev_addr}, join-accept {ja.dev_addr:08x}")
        d.session = ja.session
        self.send_data(d, b"joined")
        ev = self.wait_up_event(d, 0)
        data = base64.b64decode(ev.get("data", "")) if ev else None
        self.check("an uplink with the joined session's keys is accepted", data == b"joined",
                   f"up event data {data!r}" if ev else
                   f"no up event (device log: {self._device_logs(d) or 'none'})")

    def _timing(self, what: str, t: Transmission, up: Uplink, delay: int, freq: float,
                datr: str) -> None:
        tx = t.txpk
        want = (up.tmst + delay) & 0xFFFFFFFF
        ok = (tx.get("tmst") == want and abs(tx.get("freq", 0) - freq) < 1e-6
              and tx.get("datr") == datr and tx.get("ipol") is True and not tx.get("imme"))
        self.check(what, ok, f"txpk tmst {tx.get('tmst')} = uplink {up.tmst} + "
                   f"{((tx.get('tmst') or 0) - up.tmst) & 0xFFFFFFFF} µs (want + {delay}), "
                   f"freq {tx.get('freq')} (want {freq}), datr {tx.get('datr')} (want {datr}), "
                   f"ipol {tx.get('ipol')}")

    def _downlink_payload(self, what: str, d: Device, t: Transmission, fport: int,
                          data: bytes) -> None:
        try:
            dl = read_data_downlink(d.session, t.phy)
        except ValueError as e:
            self.check(what, False, str(e))
            return
        self.check(what, dl.mic_ok and dl.fport == fport and dl.payload == data,
                   f"MIC {'ok' if dl.mic_ok else 'wrong'}, FPort {dl.fport}, FCnt {dl.fcnt}, "
                   f"payload {dl.payload!r} (want {data!r} on {fport})")

    def _acks(self, what: str, d: Device, queue_id: str, statuses: list[str]) -> None:
        c = self.ctx
        topic = self._app_topic(d, "txack")
        txack = c.watch.wait_for(lambda m: m.topic == topic and
                                 integration_event(m).get("queueItemId") == queue_id, c.timeout)
        self.check(f"{what}: ChirpStack's txack event", bool(txack),
                   f"txack for queue item {queue_id}" if txack else
                   f"no txack event for queue item {queue_id} within {c.timeout:.0f} s")

        def item_statuses(m: Message) -> list[str]:
            ack = self._decode(DownlinkTxAck, m)
            return [TxAckStatus.Name(i.status) for i in ack.items] if ack else ["undecodable"]

        acks = c.watch.wait_for(lambda m: m.topic == self._gw_topic("ack")
                                and item_statuses(m) == statuses, c.timeout)
        seen = [item_statuses(m) for m in c.watch.snapshot(
            lambda m: m.topic == self._gw_topic("ack"))]
        self.check(f"{what}: gatewayd's DownlinkTxAck", bool(acks),
                   f"items {statuses}" if acks else f"no ack with items {statuses}; seen {seen}")

    def downlink_rx1(self) -> None:
        c, d = self.ctx, self.devices["abp-a"]
        data = b"rx1 downlink"
        queue_id = c.cs.enqueue(d.dev_eui, 10, data)
        before = len(self.fwd.transmissions)
        up = self.send_data(d, b"poll rx1")
        t = self.wait_transmission(before, _to(d))
        if not self.check("queued downlink reaches the forwarder", t is not None,
                          "a PULL_RESP" if t else f"none within {c.timeout:.0f} s"):
            return
        self._timing("queued downlink at tmst + 1 s (RX1)", t, up, RX1, up.freq_mhz, up.datr)
        self._downlink_payload("RX1 downlink decrypts to the queued payload", d, t, 10, data)
        # ChirpStack offers RX1 and RX2: RX1 sent, RX2 not tried.
        self._acks("RX1 downlink", d, queue_id, ["OK", "IGNORED"])

    def downlink_rx2_after_too_late(self) -> None:
        c, d = self.ctx, self.devices["abp-a"]
        data = b"rx2 downlink"
        queue_id = c.cs.enqueue(d.dev_eui, 11, data)
        before = len(self.fwd.transmissions)
        self.fwd.answer(_to(d), "TOO_LATE")
        up = self.send_data(d, b"poll rx2")
        ts = self.wait_transmissions(before, _to(d), 2)
        if not self.check("after TOO_LATE at RX1 the RX2 item reaches the forwarder",
                          len(ts) == 2 and ts[0].status == "TOO_LATE",
                          f"{len(ts)} PULL_RESPs for {d.name} (want 2), answered "
                          f"{[x.status for x in ts]}"):
            return
        t = ts[1]
        self._timing("RX2 downlink at tmst + 2 s, 869.525 MHz SF12", t, up, RX2, 869.525,
                     "SF12BW125")
        self._downlink_payload("RX2 downlink decrypts to the queued payload", d, t, 11, data)
        self._acks("RX2 downlink", d, queue_id, ["TOO_LATE", "OK"])

    def downlink_class_c(self) -> None:
        c, d = self.ctx, self.devices["abp-c"]
        data = b"class c downlink"
        before = len(self.fwd.transmissions)
        queue_id = c.cs.enqueue(d.dev_eui, 12, data)
        t = self.wait_transmission(before, _to(d))
        if not self.check("Class C downlink reaches the forwarder", t is not None,
                          "a PULL_RESP" if t else f"none within {c.timeout:.0f} s"):
            return
        tx = t.txpk
        self.check("Class C downlink is sent at once (imme), 869.525 MHz SF12",
                   tx.get("imme") is True and abs(tx.get("freq", 0) - 869.525) < 1e-6
                   and tx.get("datr") == "SF12BW125",
                   f"imme {tx.get('imme')}, tmst {tx.get('tmst')}, freq {tx.get('freq')}, "
                   f"datr {tx.get('datr')}")
        self._downlink_payload("Class C downlink decrypts to the queued payload", d, t, 12, data)
        self._acks("Class C downlink", d, queue_id, ["OK"])

    def stats(self) -> None:
        """gatewayd's event/stats, summed over the round, against what the forwarder did;
        then ChirpStack's own gateway metrics built from them."""
        c = self.ctx
        topic = self._gw_topic("stats")

        def totals():
            t = {"n": 0, "rx_ok": 0, "tx_received": 0, "tx_emitted": 0, "per_status": {},
                 "per_freq": 0, "rx_per_mod": 0, "tx_per_mod": 0, "duty_bands": 0,
                 "undecodable": 0}
            for m in c.watch.snapshot(lambda m: m.topic == topic):
                s = self._decode(GatewayStats, m)
                if s is None:
                    t["undecodable"] += 1
                    continue
                t["n"] += 1
                t["rx_ok"] += s.rx_packets_received_ok
                t["tx_received"] += s.tx_packets_received
                t["tx_emitted"] += s.tx_packets_emitted
                for k, v in s.tx_packets_per_status.items():
                    t["per_status"][k] = t["per_status"].get(k, 0) + v
                t["per_freq"] += sum(s.tx_packets_per_frequency.values())
                t["rx_per_mod"] += sum(x.count for x in s.rx_packets_per_modulation)
                t["tx_per_mod"] += sum(x.count for x in s.tx_packets_per_modulation)
                t["duty_bands"] = max(t["duty_bands"], len(s.duty_cycle_stats.bands))
            return t

        emitted = self.fwd.emitted()
        too_late = sum(1 for t in self.fwd.transmissions if t.status == "TOO_LATE")
        uplinks = len(self.fwd.uplinks)
        # Stats come every stats_secs; wait for those covering every transmission.
        t = c.watch.wait_until(lambda: (v := totals())["tx_emitted"] >= emitted
                               and v["rx_ok"] >= uplinks and v, 3 * c.stats_secs + 10) or totals()
        fig = f"summed over {t['n']} event/stats"
        self.check("gateway stats decode", t["n"] > 0 and not t["undecodable"],
                   f"{t['n']} decoded, {t['undecodable']} undecodable")
        self.check("gateway stats: tx_packets_emitted counts every emitted downlink",
                   t["tx_emitted"] >= emitted,
                   f"{t['tx_emitted']} {fig}; the forwarder emitted {emitted}")
        self.check("gateway stats: tx_packets_received counts the downlinks asked",
                   t["tx_received"] >= emitted,
                   f"{t['tx_received']} {fig}; want >= {emitted} (the forwarder emitted "
                   f"{emitted} of {len(self.fwd.transmissions)} PULL_RESPs)")
        ps = t["per_status"]
        self.check("gateway stats: tx_packets_per_status has OK and TOO_LATE",
                   ps.get("OK", 0) >= emitted and ps.get("TOO_LATE", 0) >= too_late,
                   f"{ps or 'empty'} {fig}; want OK >= {emitted}, TOO_LATE >= {too_late}")
        self.check("gateway stats: tx_packets_per_frequency counts the downlinks",
                   t["per_freq"] >= emitted, f"{t['per_freq']} in all {fig}; want >= {emitted}")
        self.check("gateway stats: rx/tx_packets_per_modulation filled",
                   t["rx_per_mod"] >= uplinks and t["tx_per_mod"] >= emitted,
                   f"rx {t['rx_per_mod']} (want >= {uplinks}), tx {t['tx_per_mod']} "
                   f"(want >= {emitted}) {fig}")
        self.check("gateway stats: duty_cycle_stats per band", t["duty_bands"] > 0,
                   f"{t['duty_bands']} bands in the fullest event/stats")
        self.check("gateway stats: rx_packets_received_ok counts the uplinks",
                   t["rx_ok"] >= uplinks, f"{t['rx_ok']} {fig}; the forwarder sent {uplinks}")
        def metrics():
            m = c.cs.gateway_metrics(self.gateway_id)
            return metric_total(m.rx_packets), metric_total(m.tx_packets)

        rx, tx = c.watch.wait_until(lambda: (v := metrics())[1] >= emitted and v,
                                    2 * c.stats_secs + 5) or metrics()
        self.check("ChirpStack's gateway metrics count every emitted downlink", tx >= emitted,
                   f"tx_packets {tx:.0f} (want >= {emitted}), rx_packets {rx:.0f}")

    def _status(self) -> dict:
        out = subprocess.run([self.ctx.gatewayd_bin, "--config", str(self.config), "status",
                              "--json"], capture_output=True, timeout=10)
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def poc_and_log(self) -> None:
        """PoC receipts on (one every receipt_secs): wait for two to be published, make sure
        ChirpStack has handled everything gatewayd published before them (one more uplink
        through the whole path), then read ChirpStack's log."""
        c = self.ctx
        chirpstack_topics = {self._gw_topic(e) for e in ("up", "stats", "ack")} | {
            f"eu868/gateway/{self.gateway_id}/state/conn"}

        def poc_messages() -> list[Message]:
            return c.watch.snapshot(lambda m: self.gateway_id in m.topic and
                                    m.topic not in chirpstack_topics and "/command/" not in m.topic)

        def published() -> dict:
            # Two receipts made and the outbox empty: the broker has acknowledged them.
            st = self._status()
            done = (st.get("receipts_total") or 0) >= 2 and st.get("outbox_messages") == 0
            return done and st

        ok = c.watch.wait_until(published, 3 * c.receipt_secs + 10)
        st = ok or self._status()
        topics: dict[str, int] = {}
        for m in poc_messages():
            topics[m.topic] = topics.get(m.topic, 0) + 1
        self.check("PoC receipts published", bool(ok),
                   f"receipts_total {st.get('receipts_total')}, outbox "
                   f"{st.get('outbox_messages')} messages; gatewayd's topics besides "
                   f"ChirpStack's: {topics or 'none with the gateway id'}")
        d = self.devices["abp-a"]
        fcnt = d.fcnt
        self.send_data(d, b"barrier")
        barrier = self.wait_up_event(d, fcnt)
        self.check("ChirpStack handled everything gatewayd published (a last uplink arrives)",
                   barrier is not None, "up event seen" if barrier else "no up event")
        lines = c.chirpstack.log_text()[self.log_offset:].splitlines()
        errors: dict[str, int] = {}
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                if "ERROR" in line:
                    errors[line.strip()] = errors.get(line.strip(), 0) + 1
                continue
            if e.get("level") == "ERROR":
                f = e.get("fields", {})
                key = f.get("message", "?") + (f" (topic {f['topic']})" if "topic" in f else "")
                errors[key] = errors.get(key, 0) + 1
        self.check("no ERROR in ChirpStack's log", not errors,
                   f"{len(lines)} log lines this round, no ERROR" if not errors else
                   f"{sum(errors.values())} ERROR lines: " +
                   "; ".join(f"{k} ×{v}" for k, v in errors.items()))
