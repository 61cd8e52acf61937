"""A Semtech UDP packet forwarder (GWMP v2) in front of gatewayd, as the SX1302 reference
forwarder behaves: PUSH_DATA with `rxpk` on one socket and a `stat` every few seconds,
PULL_DATA keep-alives on another, every PULL_RESP answered with a TX_ACK. The concentrator
counter `tmst` is a 32-bit microsecond counter that runs with the monotonic clock."""

from __future__ import annotations

import base64
import itertools
import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field

PUSH_DATA, PUSH_ACK, PULL_DATA, PULL_RESP, PULL_ACK, TX_ACK = range(6)
VERSION = 2


@dataclass
class Uplink:
    """One rxpk sent: its counter value and radio parameters."""

    tmst: int
    freq_mhz: float
    datr: str
    phy: bytes
    acked: bool = False


@dataclass
class Transmission:
    """One PULL_RESP received and what the forwarder answered."""

    txpk: dict
    phy: bytes
    received_tmst: int
    status: str
    at: float = field(default_factory=time.monotonic)


class Forwarder:
    """The forwarder of gateway `eui` (8 bytes), talking to gatewayd at 127.0.0.1:`port`."""

    def __init__(self, eui: bytes, port: int, stat_interval: float = 5.0):
        self.eui = eui
        self.server = ("127.0.0.1", port)
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.bind(("127.0.0.1", 0))
        self.down = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.down.bind(("127.0.0.1", 0))
        self.down.settimeout(0.2)
        self._t0 = time.monotonic() - random.uniform(0, 3000)  # any counter start
        self._tokens = itertools.count(random.randrange(0x10000))  # next() is atomic
        self._lock = threading.Condition()
        self._push_lock = threading.Lock()  # one PUSH_DATA awaits its PUSH_ACK at a time
        self.uplinks: list[Uplink] = []
        self.transmissions: list[Transmission] = []
        self.pull_acks = 0
        self.push_acks = 0
        self.tx_ack_errors = 0
        # (predicate on the PHY payload, status): the first PULL_RESP whose payload matches is
        # answered with that status instead of "NONE" (sent).
        self.answer_next: tuple | None = None
        self._stop = threading.Event()
        self._stat_interval = stat_interval
        self._counts = {"rxnb": 0, "rxok": 0, "rxfw": 0, "dwnb": 0, "txnb": 0}
        self._thread = threading.Thread(target=self._down_loop, daemon=True)
        self._thread.start()
        self._stat_thread = threading.Thread(target=self._stat_loop, daemon=True)
        self._stat_thread.start()

    def tmst(self) -> int:
        """The concentrator counter now."""
        return int((time.monotonic() - self._t0) * 1e6) & 0xFFFFFFFF

    def _next_token(self) -> bytes:
        return (next(self._tokens) & 0xFFFF).to_bytes(2, "big")

    def _header(self, kind: int, token: bytes | None = None) -> bytes:
        return bytes([VERSION]) + (token or self._next_token()) + bytes([kind]) + self.eui

    def close(self) -> None:
        """Stop the threads and close the sockets."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._stat_thread.join(timeout=5)
        self.up.close()
        self.down.close()

    # Uplinks.

    def send_uplink(self, phy: bytes, freq_mhz: float = 868.1, datr: str = "SF7BW125",
                    timeout: float = 10.0) -> Uplink:
        """Send one rxpk (CRC ok) and wait for its PUSH_ACK, which gatewayd sends once the
        uplink is committed to its outbox; raises TimeoutError without one."""
        up = Uplink(self.tmst(), freq_mhz, datr, phy)
        rxpk = {
            "jver": 1, "tmst": up.tmst, "chan": 0, "rfch": 0, "freq": freq_mhz, "mid": 8,
            "stat": 1, "modu": "LORA", "datr": datr, "codr": "4/5", "rssis": -62, "rssi": -60,
            "lsnr": 9.5, "foff": -120, "size": len(phy),
            "data": base64.b64encode(phy).decode(),
        }
        with self._lock:
            self._counts["rxnb"] += 1
            self._counts["rxok"] += 1
            self._counts["rxfw"] += 1
            self.uplinks.append(up)
        up.acked = self._push({"rxpk": [rxpk]}, timeout)
        if not up.acked:
            raise TimeoutError(f"no PUSH_ACK within {timeout} s for the rxpk at tmst {up.tmst}")
        return up

    def _push(self, body: dict, timeout: float) -> bool:
        with self._push_lock:
            return self._push_locked(body, timeout)

    def _push_locked(self, body: dict, timeout: float) -> bool:
        header = self._header(PUSH_DATA)
        token = header[1:3]
        self.up.sendto(header + json.dumps(body).encode(), self.server)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.up.settimeout(left)
            try:
                data, _ = self.up.recvfrom(65535)
            except socket.timeout:
                break
            if len(data) >= 4 and data[3] == PUSH_ACK and data[1:3] == token:
                with self._lock:
                    self.push_acks += 1
                return True
        return False

    def _stat_loop(self) -> None:
        while not self._stop.wait(self._stat_interval):
            with self._lock:
                c = dict(self._counts)
                for k in self._counts:
                    self._counts[k] = 0
            stat = {
                "time": time.strftime("%Y-%m-%d %H:%M:%S GMT", time.gmtime()),
                "rxnb": c["rxnb"], "rxok": c["rxok"], "rxfw": c["rxfw"], "ackr": 100.0,
                "dwnb": c["dwnb"], "txnb": c["txnb"],
            }
            try:
                self._push({"stat": stat}, 2.0)
            except OSError:
                return

    # Downlinks.

    def _down_loop(self) -> None:
        next_pull = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_pull:
                try:
                    self.down.sendto(self._header(PULL_DATA), self.server)
                except OSError:
                    return
                next_pull = now + 1.0
            try:
                data, addr = self.down.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) < 4:
                continue
            if data[3] == PULL_ACK:
                with self._lock:
                    self.pull_acks += 1
                    self._lock.notify_all()
            elif data[3] == PULL_RESP:
                self._pull_resp(data, addr)

    def _pull_resp(self, data: bytes, addr) -> None:
        received = self.tmst()
        try:
            txpk = json.loads(data[4:])["txpk"]
            phy = base64.b64decode(txpk["data"])
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.tx_ack_errors += 1
            txpk, phy = {"unreadable": data[4:].decode(errors="replace")}, b""
        with self._lock:
            status = "NONE" if phy else "TX_FREQ"
            if phy and self.answer_next and self.answer_next[0](phy):
                status, self.answer_next = self.answer_next[1], None
            self._counts["dwnb"] += 1
            if status == "NONE":
                self._counts["txnb"] += 1
            self.transmissions.append(Transmission(txpk, phy, received, status))
            self._lock.notify_all()
        ack = {"txpk_ack": {"error": status}}
        self.down.sendto(self._header(TX_ACK, data[1:3]) + json.dumps(ack).encode(), addr)

    def wait_pull_ack(self, timeout: float) -> bool:
        """Whether gatewayd answered a PULL_DATA within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.pull_acks == 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def answer(self, match, status: str) -> None:
        """Answer the next PULL_RESP whose PHY payload satisfies `match` with `status`."""
        with self._lock:
            self.answer_next = (match, status)

    def wait_transmissions(self, after: int, match, count: int, timeout: float,
                           ) -> list[Transmission]:
        """The PULL_RESPs received after the first `after` whose PHY payload satisfies
        `match`, once there are `count` of them or at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [t for t in self.transmissions[after:] if match(t.phy)]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._lock.wait(left)

    def emitted(self) -> int:
        """PULL_RESPs answered as sent."""
        with self._lock:
            return sum(1 for t in self.transmissions if t.status == "NONE")
