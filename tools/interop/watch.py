"""An MQTT client on the test broker that records every message (`#`): what gatewayd publishes
for ChirpStack, and ChirpStack's integration events. Waits are bounded by deadlines."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from chirpstack_api.gw import gw_pb2
from google.protobuf import json_format


@dataclass
class Message:
    topic: str
    payload: bytes
    at: float


class Watch:
    """Subscribed to everything on 127.0.0.1:`port` from construction on."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="interop-watch")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise RuntimeError(f"MQTT watcher: no SUBACK from the broker on port {port} within "
                               f"{timeout} s")

    def _on_connect(self, client, userdata, flags, reason, properties):
        client.subscribe("#", qos=1)

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), time.monotonic()))
            self._cond.notify_all()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def snapshot(self, pred=None) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if pred is None or pred(m)]

    def wait_for(self, pred, timeout: float, count: int = 1) -> list[Message]:
        """Messages matching `pred` once there are `count` of them, or those there are at the
        deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if pred(m)]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._cond.wait(left)

    def wait_until(self, cond, timeout: float):
        """Re-evaluate `cond()` whenever a message arrives (and every second) until it returns
        something true or the deadline passes; returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            left = deadline - time.monotonic()
            if value or left <= 0:
                return value
            with self._cond:
                self._cond.wait(min(left, 1.0))


def integration_event(m: Message) -> dict:
    """An integration event (ChirpStack's MQTT integration, JSON)."""
    return json.loads(m.payload)


def decode_gateway(kind: type, m: Message, json_mode: bool):
    """A gateway event as ChirpStack decodes it: binary protobuf or the protobuf JSON mapping."""
    msg = kind()
    if json_mode:
        json_format.Parse(m.payload, msg, ignore_unknown_fields=True)
    else:
        msg.ParseFromString(m.payload)
    return msg


UplinkFrame = gw_pb2.UplinkFrame
GatewayStats = gw_pb2.GatewayStats
DownlinkTxAck = gw_pb2.DownlinkTxAck
ConnState = gw_pb2.ConnState
TxAckStatus = gw_pb2.TxAckStatus
