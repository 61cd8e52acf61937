"""The processes of an interop run: Redis, Mosquitto, ChirpStack and gatewayd, each on free
loopback ports with its files in one temp dir, its output in a log file there. Every process
started is registered and stopped by `Services.stop_all` (and dies with the driver if the
driver is killed: PR_SET_PDEATHSIG)."""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP/UDP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class StartError(RuntimeError):
    """A service did not come up; the message names it and quotes its log."""


class Proc:
    """One started process with its log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict | None = None):
        self.name = name
        self.argv = argv
        self.log = log
        self._log_file = open(log, "ab")
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
            env=env, preexec_fn=_die_with_parent,
        )

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, within: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `within` seconds; the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(within)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log_file.close()
        return self.popen.returncode


def wait_tcp(port: int, proc: Proc, timeout: float) -> None:
    """Wait until 127.0.0.1:`port` accepts a connection; StartError if `proc` exits first or
    the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if not proc.running():
            raise StartError(f"{proc.name} exited ({proc.popen.returncode}) before listening on "
                             f"127.0.0.1:{port}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise StartError(f"{proc.name} did not listen on 127.0.0.1:{port} within "
                             f"{timeout:.0f} s:\n{proc.log_tail()}")
        time.sleep(0.1)


def find_binary(env_var: str, name: str, fallback: str) -> str:
    """`$env_var`, else `name` on PATH, else `fallback`."""
    return os.environ.get(env_var) or shutil.which(name) or fallback


class Services:
    """The run's temp dir and every process started in it."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict | None = None) -> Proc:
        p = Proc(name, argv, self.dir / f"{name}.log", env)
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        """Stop every process, last started first."""
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    def redis(self) -> int:
        port = free_port()
        d = self.dir / "redis"
        d.mkdir()
        p = self.start("redis", [
            find_binary("REDIS_SERVER", "redis-server", "/usr/bin/redis-server"),
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(d), "--daemonize", "no",
        ])
        wait_tcp(port, p, 20)
        return port

    def mosquitto(self) -> int:
        port = free_port()
        conf = self.dir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        p = self.start("mosquitto", [
            find_binary("MOSQUITTO", "mosquitto", "/usr/sbin/mosquitto"), "-c", str(conf), "-v",
        ])
        wait_tcp(port, p, 20)
        return port

    def chirpstack(self, binary: str, redis_port: int, mqtt_port: int) -> tuple[Proc, int]:
        """ChirpStack (SQLite build) with EU868 only, its gateway backend and MQTT integration
        on the test broker, JSON logs; returns the process and its API port."""
        api_port = free_port()
        conf = self.dir / "chirpstack"
        conf.mkdir()
        (conf / "chirpstack.toml").write_text(CHIRPSTACK_TOML.format(
            db=self.dir / "chirpstack.sqlite", redis=redis_port, mqtt=mqtt_port, api=api_port,
            secret=secrets.token_urlsafe(32),
        ))
        (conf / "region_eu868.toml").write_text(REGION_EU868_TOML.format(mqtt=mqtt_port))
        p = self.start("chirpstack", [binary, "--config", str(conf)])
        wait_tcp(api_port, p, 120)
        return p, api_port

    def gatewayd(self, binary: str, name: str, mqtt_port: int, json_mode: bool,
                 stats_secs: int, receipt_secs: int) -> tuple[Proc, int, Path]:
        """gatewayd with the Semtech UDP backend on a free port, publishing to the test broker
        in binary or JSON mode, proof of coverage on with a receipt every `receipt_secs`;
        returns the process, its GWMP port and its config."""
        udp_port = free_port()
        d = self.dir / name
        d.mkdir()
        config = d / "gatewayd.toml"
        config.write_text(GATEWAYD_TOML.format(
            state=d / "state", udp=udp_port, mqtt=mqtt_port, json=str(json_mode).lower(),
            stats=stats_secs, receipt=receipt_secs, sock=d / "status.sock",
        ))
        p = self.start(name, [binary, "--config", str(config), "--log-level", "debug"])
        return p, udp_port, config


# ChirpStack's own config (see its configuration/chirpstack.toml for every key).
CHIRPSTACK_TOML = """\
[logging]
level = "info"
json = true

[sqlite]
path = "sqlite://{db}"

[redis]
servers = ["redis://127.0.0.1:{redis}/"]

[network]
net_id = "000000"
enabled_regions = ["eu868"]

[api]
bind = "127.0.0.1:{api}"
secret = "{secret}"

[integration]
enabled = ["mqtt"]

[integration.mqtt]
server = "tcp://127.0.0.1:{mqtt}/"
json = true
"""

# EU868 with the three default channels only (no extra channels, so that ChirpStack sends no
# NewChannelReq of its own into the flow), RX1 after 1 s, RX2 at 869.525 MHz DR0.
REGION_EU868_TOML = """\
[[regions]]
id = "eu868"
description = "EU868"
common_name = "EU868"

[regions.gateway]
force_gws_private = false

[regions.gateway.backend]
enabled = "mqtt"

[regions.gateway.backend.mqtt]
topic_prefix = "eu868"
share_name = "chirpstack"
server = "tcp://127.0.0.1:{mqtt}"
qos = 0
clean_session = false
keep_alive_interval = "30s"

[regions.network]
installation_margin = 10
rx_window = 0
rx1_delay = 1
rx1_dr_offset = 0
rx2_dr = 0
rx2_frequency = 869525000
downlink_tx_power = -1
adr_disabled = false
min_dr = 0
max_dr = 5
"""

GATEWAYD_TOML = """\
[gateway]
region = "EU868"
state_dir = "{state}"
stats_interval_secs = {stats}

[radio]
kind = "semtech_udp"

[radio.semtech_udp]
bind = "127.0.0.1:{udp}"

[mqtt]
server = "tcp://127.0.0.1:{mqtt}"
topic_prefix = "eu868"
json = {json}
reconnect_min_ms = 100
reconnect_max_ms = 1000

[service]
allow_root = true
status_socket = "{sock}"
metrics_bind = "127.0.0.1:0"

[poc]
enabled = true
receipt_interval_secs = {receipt}
clock = "trusted"
"""
