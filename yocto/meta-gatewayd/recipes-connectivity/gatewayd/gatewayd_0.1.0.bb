SUMMARY = "LoRa hotspot daemon: radio, uplinks, proof of coverage, SQLite buffer, MQTT"
DESCRIPTION = "gatewayd drives a LoRa radio (SX126x/SX127x over SPI and GPIO, or an \
               SX130x concentrator through the Semtech UDP packet forwarder), collects \
               device uplinks, performs proof of coverage, buffers everything in SQLite \
               and forwards it over MQTT with the ChirpStack gateway protocol."
HOMEPAGE = "https://example.invalid/gatewayd"
BUGTRACKER = "https://example.invalid/gatewayd/issues"
SECTION = "net"
CVE_PRODUCT = "gatewayd"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=9;endline=9;md5=2507bd5f0713f05419cd2f22fa06fe62"

# protoc for the ChirpStack protobuf messages, OpenSSL for MQTT over TLS (native-tls);
# SQLite is compiled in (rusqlite "bundled").
DEPENDS = "openssl protobuf-native"

SRC_URI = "git://example.invalid/gatewayd.git;protocol=https;branch=main"
# The commit this layer (and its gatewayd-crates.inc) came from: set it in local.conf or a
# distro config, e.g. GATEWAYD_SRCREV = "<40-hex commit of the release>".
GATEWAYD_SRCREV ??= "${AUTOREV}"
SRCREV = "${GATEWAYD_SRCREV}"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates pkgconfig systemd useradd

# The Cargo workspace is the repository root; build its gatewayd member.
CARGO_SRC_DIR = "gatewayd"
CARGO_BUILD_FLAGS += "--package gatewayd"
# Rust >= 1.89 (the workspace's rust-version); see the layer README.

# The targets the daemon is built and tested for (aarch64 and armv7 under qemu in CI, x86-64
# natively); Raspberry Pi machines of meta-raspberrypi are aarch64 or arm. ARMv6 (Pi Zero/1)
# builds with Yocto's own tuned toolchain but is not tested.
COMPATIBLE_HOST = "(aarch64|arm|x86_64).*-linux"

USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system spi; --system gpio; --system dialout"
USERADD_PARAM:${PN} = "--system --home-dir ${localstatedir}/lib/gatewayd --no-create-home \
                       --shell ${base_sbindir}/nologin --user-group --groups spi,gpio,dialout gatewayd"

SYSTEMD_SERVICE:${PN} = "gatewayd.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/systemd/gatewayd.service ${D}${systemd_system_unitdir}/
    install -d ${D}${sysconfdir}/gatewayd
    install -m 0640 -g gatewayd ${S}/packaging/gatewayd.toml ${D}${sysconfdir}/gatewayd/
}

BBCLASSEXTEND = ""

CONFFILES:${PN} = "${sysconfdir}/gatewayd/gatewayd.toml"
