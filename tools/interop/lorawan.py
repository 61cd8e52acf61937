"""LoRaWAN 1.0.x frames as an end device builds and reads them: ABP/OTAA data uplinks, the
join request, the join-accept and data downlinks (AES-128 and AES-CMAC, LoRaWAN 1.0.3 §4, §6)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

UP = 0
DOWN = 1


def aes_encrypt(key: bytes, block: bytes) -> bytes:
    """AES-128 ECB encryption of whole blocks."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def aes_cmac(key: bytes, msg: bytes) -> bytes:
    """AES-CMAC of `msg`."""
    c = cmac.CMAC(algorithms.AES(key))
    c.update(msg)
    return c.finalize()


def _crypt_frm(key: bytes, direction: int, dev_addr: int, fcnt: int, data: bytes) -> bytes:
    """FRMPayload encryption (= decryption) with the A_i blocks of LoRaWAN 1.0.3 §4.3.3."""
    out = bytearray()
    for i in range(0, len(data), 16):
        a = struct.pack("<BIBIIBB", 0x01, 0, direction, dev_addr, fcnt, 0, i // 16 + 1)
        s = aes_encrypt(key, a)
        out += bytes(x ^ y for x, y in zip(data[i : i + 16], s))
    return bytes(out)


def _data_mic(nwk_s_key: bytes, direction: int, dev_addr: int, fcnt: int, msg: bytes) -> bytes:
    b0 = struct.pack("<BIBIIBB", 0x49, 0, direction, dev_addr, fcnt, 0, len(msg))
    return aes_cmac(nwk_s_key, b0 + msg)[:4]


@dataclass
class Session:
    """An activated device's session: what ABP provisions and OTAA derives."""

    dev_addr: int
    nwk_s_key: bytes
    app_s_key: bytes


def data_uplink(s: Session, fcnt: int, fport: int, payload: bytes,
                confirmed: bool = False) -> bytes:
    """An (un)confirmed data uplink, ADR off, no FOpts: MHDR | FHDR | FPort | FRMPayload | MIC."""
    mhdr = 0x80 if confirmed else 0x40
    key = s.nwk_s_key if fport == 0 else s.app_s_key
    msg = struct.pack("<BIBH", mhdr, s.dev_addr, 0x00, fcnt & 0xFFFF) + bytes([fport])
    msg += _crypt_frm(key, UP, s.dev_addr, fcnt, payload)
    return msg + _data_mic(s.nwk_s_key, UP, s.dev_addr, fcnt, msg)


@dataclass
class Downlink:
    """A data downlink as the device reads it."""

    mtype: int
    dev_addr: int
    fctrl: int
    fcnt: int
    fopts: bytes
    fport: int | None
    payload: bytes
    mic_ok: bool


def read_data_downlink(s: Session, phy: bytes) -> Downlink:
    """Parse, check the MIC of and decrypt a data downlink (the 16-bit FCnt is taken as is)."""
    if len(phy) < 12:
        raise ValueError(f"a data downlink is at least 12 bytes, got {len(phy)}")
    mtype = phy[0] >> 5
    if mtype not in (3, 5):
        raise ValueError(f"MHDR {phy[0]:#04x} is not a data downlink")
    dev_addr, fctrl, fcnt = struct.unpack_from("<IBH", phy, 1)
    fopts_len = fctrl & 0x0F
    fopts = phy[8 : 8 + fopts_len]
    rest = phy[8 + fopts_len : -4]
    mic_ok = _data_mic(s.nwk_s_key, DOWN, dev_addr, fcnt, phy[:-4]) == phy[-4:]
    fport = rest[0] if rest else None
    payload = b""
    if rest:
        key = s.nwk_s_key if fport == 0 else s.app_s_key
        payload = _crypt_frm(key, DOWN, dev_addr, fcnt, rest[1:])
    return Downlink(mtype, dev_addr, fctrl, fcnt, fopts, fport, payload, mic_ok)


def join_request(app_key: bytes, join_eui: bytes, dev_eui: bytes, dev_nonce: int) -> bytes:
    """A join request; the EUIs are given big-endian (as displayed) and sent little-endian."""
    msg = bytes([0x00]) + join_eui[::-1] + dev_eui[::-1] + struct.pack("<H", dev_nonce)
    return msg + aes_cmac(app_key, msg)[:4]


@dataclass
class JoinAccept:
    """A decrypted join-accept and the session it gives."""

    join_nonce: int
    net_id: int
    dev_addr: int
    dl_settings: int
    rx_delay: int
    cf_list: bytes
    mic_ok: bool
    session: Session


def read_join_accept(app_key: bytes, dev_nonce: int, phy: bytes) -> JoinAccept:
    """Decrypt a join-accept (the device encrypts with AES to decrypt), check its MIC and derive
    the session keys (LoRaWAN 1.0.3 §6.2.5)."""
    if phy[0] != 0x20 or len(phy) not in (17, 33):
        raise ValueError(f"not a join-accept: MHDR {phy[0]:#04x}, {len(phy)} bytes")
    plain = phy[:1] + aes_encrypt(app_key, phy[1:])
    body, mic = plain[:-4], plain[-4:]
    mic_ok = aes_cmac(app_key, body)[:4] == mic
    join_nonce = int.from_bytes(body[1:4], "little")
    net_id = int.from_bytes(body[4:7], "little")
    dev_addr, dl_settings, rx_delay = struct.unpack_from("<IBB", body, 7)
    cf_list = body[13:]

    def derive(kind: int) -> bytes:
        b = bytes([kind]) + body[1:4] + body[4:7] + struct.pack("<H", dev_nonce)
        return aes_encrypt(app_key, b + bytes(16 - len(b)))

    session = Session(dev_addr, derive(0x01), derive(0x02))
    return JoinAccept(join_nonce, net_id, dev_addr, dl_settings, rx_delay, cf_list, mic_ok, session)
