//! LoRaWAN 1.0.x frames for the simulated devices (and the test-side network server): join
//! request, join accept and data frames with their MICs and FRMPayload encryption, built
//! and opened with the `lorawan` crate (lora-rs) and its default AES/CMAC.
//!
//! Pure functions over bytes. EUIs are given in display (big-endian) order, DevAddr,
//! JoinNonce and NetID as numbers; this module puts them on the wire little-endian.

use lorawan::creator::{DataPayloadCreator, JoinAcceptCreator, JoinRequestCreator};
use lorawan::default_crypto::DefaultFactory;
use lorawan::keys::{AppKey, AppSKey, NewSKey, AES128};
use lorawan::parser::{
    DataHeader, DecryptedJoinAcceptPayload, DevNonce, EncryptedDataPayload, FCtrl, FRMPayload,
    JoinRequestPayload,
};

use drivers::radio::Eui64;

/// A 128-bit AES key as written by network servers (MSB first).
pub type Key = [u8; 16];

/// A LoRaWAN 1.0.x session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Device address.
    pub dev_addr: u32,
    /// Network session key (MIC; FPort 0 encryption).
    pub nwk_skey: Key,
    /// Application session key (FPort > 0 encryption).
    pub app_skey: Key,
}

/// What a device learns from a valid join-accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinAccepted {
    /// The new session (keys derived from AppKey, JoinNonce, NetID and DevNonce).
    pub session: Session,
    /// JoinNonce (AppNonce), 24 bits.
    pub join_nonce: u32,
    /// NetID, 24 bits.
    pub net_id: u32,
    /// DLSettings byte.
    pub dl_settings: u8,
    /// RxDelay (0 means 1 s).
    pub rx_delay: u8,
}

/// A decoded join-request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinRequest {
    /// JoinEUI (AppEUI).
    pub join_eui: Eui64,
    /// DevEUI.
    pub dev_eui: Eui64,
    /// DevNonce.
    pub dev_nonce: u16,
}

/// A verified and decrypted data frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFrame {
    /// Device address.
    pub dev_addr: u32,
    /// Uplink (true) or downlink.
    pub uplink: bool,
    /// Confirmed frame.
    pub confirmed: bool,
    /// FCtrl ACK bit.
    pub ack: bool,
    /// Full 32-bit frame counter used for the MIC.
    pub fcnt: u32,
    /// FPort, when present.
    pub fport: Option<u8>,
    /// Decrypted FRMPayload (application data or MAC commands).
    pub payload: Vec<u8>,
}

/// Why a frame could not be built or opened.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Not a well-formed frame of the expected kind.
    #[error("malformed {kind} ({len} bytes): {reason}")]
    Malformed {
        /// What was expected.
        kind: &'static str,
        /// Frame length.
        len: usize,
        /// What is wrong.
        reason: String,
    },
    /// The MIC does not match the key.
    #[error("{0}: MIC does not match")]
    BadMic(&'static str),
    /// The frame is for another device.
    #[error("frame for DevAddr {got:08x}, session is {want:08x}")]
    OtherDevice {
        /// Address in the frame.
        got: u32,
        /// Address of the session.
        want: u32,
    },
}

fn wire_eui(e: Eui64) -> [u8; 8] {
    let mut b = e.0;
    b.reverse();
    b
}

fn eui_from_wire(b: &[u8]) -> Eui64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(&b[..8]);
    out.reverse();
    Eui64(out)
}

fn u24(b: &[u8]) -> u32 {
    u32::from(b[0]) | (u32::from(b[1]) << 8) | (u32::from(b[2]) << 16)
}

fn malformed(kind: &'static str, len: usize, reason: impl Into<String>) -> CryptoError {
    CryptoError::Malformed {
        kind,
        len,
        reason: reason.into(),
    }
}

/// A join-request PHYPayload with its MIC (AppKey).
pub fn join_request(join_eui: Eui64, dev_eui: Eui64, dev_nonce: u16, app_key: &Key) -> Vec<u8> {
    let mut c = JoinRequestCreator::new();
    c.set_app_eui(wire_eui(join_eui))
        .set_dev_eui(wire_eui(dev_eui))
        .set_dev_nonce(&dev_nonce.to_le_bytes());
    c.build(&AppKey::from(*app_key)).to_vec()
}

/// Decode a join-request; with `app_key`, also check its MIC.
pub fn open_join_request(phy: &[u8], app_key: Option<&Key>) -> Result<JoinRequest, CryptoError> {
    const KIND: &str = "join-request";
    let jr =
        JoinRequestPayload::new(phy).map_err(|e| malformed(KIND, phy.len(), format!("{e:?}")))?;
    if let Some(k) = app_key {
        if !jr.validate_mic(&AES128(*k)) {
            return Err(CryptoError::BadMic(KIND));
        }
    }
    let nonce = jr.dev_nonce();
    let n = nonce.as_ref();
    Ok(JoinRequest {
        join_eui: eui_from_wire(jr.app_eui().as_ref()),
        dev_eui: eui_from_wire(jr.dev_eui().as_ref()),
        dev_nonce: u16::from_le_bytes([n[0], n[1]]),
    })
}

/// An encrypted join-accept (no CFList), as a network server sends it.
pub fn join_accept(
    app_key: &Key,
    join_nonce: u32,
    net_id: u32,
    dev_addr: u32,
    dl_settings: u8,
    rx_delay: u8,
) -> Vec<u8> {
    let nonce = join_nonce.to_le_bytes();
    let net = net_id.to_le_bytes();
    let mut c = match JoinAcceptCreator::with_options([0u8; 17], DefaultFactory) {
        Ok(c) => c,
        Err(_) => unreachable!("a 17-byte buffer is accepted"),
    };
    c.set_app_nonce(&[nonce[0], nonce[1], nonce[2]])
        .set_net_id(&[net[0], net[1], net[2]])
        .set_dev_addr(&dev_addr.to_le_bytes())
        .set_dl_settings(dl_settings)
        .set_rx_delay(rx_delay);
    match c.build(&AES128(*app_key)) {
        Ok(b) => b.to_vec(),
        Err(_) => unreachable!("a 17-byte buffer fits a join-accept without CFList"),
    }
}

/// Decrypt a join-accept, check its MIC and derive the 1.0 session keys.
pub fn open_join_accept(
    phy: &[u8],
    app_key: &Key,
    dev_nonce: u16,
) -> Result<JoinAccepted, CryptoError> {
    const KIND: &str = "join-accept";
    let key = AppKey::from(*app_key);
    let mut buf = phy.to_vec();
    let ja = DecryptedJoinAcceptPayload::new(&mut buf[..], &key).map_err(|e| match e {
        lorawan::parser::Error::InvalidMic => CryptoError::BadMic(KIND),
        e => malformed(KIND, phy.len(), format!("{e:?}")),
    })?;
    let nonce = dev_nonce.to_le_bytes();
    let dn = DevNonce::new(&nonce[..]).ok_or_else(|| malformed(KIND, phy.len(), "DevNonce"))?;
    let nwk = ja.derive_newskey(&dn, &key);
    let app = ja.derive_appskey(&dn, &key);
    let addr = ja.dev_addr();
    let a = addr.as_ref();
    let mut nwk_skey = [0u8; 16];
    nwk_skey.copy_from_slice(nwk.as_ref());
    let mut app_skey = [0u8; 16];
    app_skey.copy_from_slice(app.as_ref());
    Ok(JoinAccepted {
        session: Session {
            dev_addr: u32::from_le_bytes([a[0], a[1], a[2], a[3]]),
            nwk_skey,
            app_skey,
        },
        join_nonce: u24(ja.app_nonce().as_ref()),
        net_id: u24(ja.net_id().as_ref()),
        dl_settings: buf[11],
        rx_delay: buf[12] & 0x0f,
    })
}

/// Parameters of a data frame to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataParams {
    /// Uplink (true) or downlink.
    pub uplink: bool,
    /// Confirmed frame.
    pub confirmed: bool,
    /// Set the FCtrl ACK bit.
    pub ack: bool,
    /// 32-bit frame counter (16 low bits go on the wire).
    pub fcnt: u32,
    /// FPort (1..=223 for application data).
    pub fport: u8,
}

/// A data frame with encrypted FRMPayload and MIC.
pub fn data_frame(
    session: &Session,
    params: DataParams,
    payload: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    const KIND: &str = "data frame";
    if payload.len() > 242 {
        return Err(malformed(KIND, payload.len(), "FRMPayload over 242 bytes"));
    }
    let mut fctrl = FCtrl::new(0, params.uplink);
    if params.ack {
        fctrl.set_ack();
    }
    let mut c = DataPayloadCreator::new();
    c.set_uplink(params.uplink)
        .set_confirmed(params.confirmed)
        .set_dev_addr(&session.dev_addr.to_le_bytes())
        .set_fctrl(&fctrl)
        .set_fcnt(params.fcnt)
        .set_f_port(params.fport);
    c.build(
        payload,
        &[],
        &NewSKey::from(session.nwk_skey),
        &AppSKey::from(session.app_skey),
    )
    .map(|b| b.to_vec())
    .map_err(|e| malformed(KIND, payload.len(), format!("{e:?}")))
}

/// The DevAddr of a data frame, if `phy` is one.
pub fn data_dev_addr(phy: &[u8]) -> Option<u32> {
    let p = EncryptedDataPayload::new(phy).ok()?;
    let a = p.fhdr().dev_addr();
    let a = a.as_ref();
    Some(u32::from_le_bytes([a[0], a[1], a[2], a[3]]))
}

/// Check a data frame's MIC with the session and decrypt it. `fcnt_hint` supplies the upper
/// 16 bits of the frame counter.
pub fn open_data_frame(
    phy: &[u8],
    session: &Session,
    fcnt_hint: u32,
) -> Result<DataFrame, CryptoError> {
    const KIND: &str = "data frame";
    let p = EncryptedDataPayload::new(phy.to_vec())
        .map_err(|e| malformed(KIND, phy.len(), format!("{e:?}")))?;
    let fhdr = p.fhdr();
    let a = fhdr.dev_addr();
    let a = a.as_ref();
    let dev_addr = u32::from_le_bytes([a[0], a[1], a[2], a[3]]);
    if dev_addr != session.dev_addr {
        return Err(CryptoError::OtherDevice {
            got: dev_addr,
            want: session.dev_addr,
        });
    }
    let fcnt = (fcnt_hint & 0xffff_0000) | u32::from(fhdr.fcnt());
    let (uplink, confirmed, ack) = (p.is_uplink(), p.is_confirmed(), fhdr.fctrl().ack());
    let fport = p.f_port();
    let nwk = AES128(session.nwk_skey);
    let app = AES128(session.app_skey);
    if !p.validate_mic(&nwk, fcnt) {
        return Err(CryptoError::BadMic(KIND));
    }
    let dec = p
        .decrypt(Some(&nwk), Some(&app), fcnt)
        .map_err(|e| malformed(KIND, phy.len(), format!("{e:?}")))?;
    let payload = match dec.frm_payload() {
        FRMPayload::Data(d) => d.to_vec(),
        FRMPayload::MACCommands(m) => m.data().to_vec(),
        FRMPayload::None => Vec::new(),
    };
    Ok(DataFrame {
        dev_addr,
        uplink,
        confirmed,
        ack,
        fcnt,
        fport,
        payload,
    })
}

#[cfg(test)]
#[path = "crypto_tests.rs"]
mod tests;
