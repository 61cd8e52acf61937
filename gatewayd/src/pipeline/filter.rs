//! The uplink decision: CRC policy, LoRaWAN header, prefix filters, de-duplication. Pure,
//! with the current time passed in; the task in `pipeline` only moves frames.

use std::time::Instant;

use drivers::radio::{CrcStatus, RxFrame};

use super::dedup::Dedup;
use crate::config::UplinkConfig;
use crate::lorawan::{parse_header, Header, MType};

/// Why a frame was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// CRC wrong and `forward_crc_invalid` off.
    CrcInvalid,
    /// No CRC and `forward_crc_missing` off.
    CrcMissing,
    /// Not a parsable LoRaWAN header.
    BadHeader,
    /// A downlink message type heard on the uplink path.
    DownlinkType,
    /// DevAddr not in the configured prefixes.
    DevAddrFiltered,
    /// JoinEUI not in the configured prefixes.
    JoinEuiFiltered,
    /// Same frame already forwarded within the window.
    Duplicate,
}

impl DropReason {
    /// Every reason, for counters.
    pub const ALL: [DropReason; 7] = [
        DropReason::CrcInvalid,
        DropReason::CrcMissing,
        DropReason::BadHeader,
        DropReason::DownlinkType,
        DropReason::DevAddrFiltered,
        DropReason::JoinEuiFiltered,
        DropReason::Duplicate,
    ];

    /// A short label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::CrcInvalid => "crc_invalid",
            DropReason::CrcMissing => "crc_missing",
            DropReason::BadHeader => "bad_header",
            DropReason::DownlinkType => "downlink_type",
            DropReason::DevAddrFiltered => "dev_addr_filtered",
            DropReason::JoinEuiFiltered => "join_eui_filtered",
            DropReason::Duplicate => "duplicate",
        }
    }
}

/// What to do with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkVerdict {
    /// Forward as a LoRaWAN uplink.
    Forward(Option<Header>),
    /// A proprietary frame: kept aside for proof of coverage, not forwarded as an uplink.
    Proprietary,
    /// Drop.
    Drop(DropReason),
}

/// The uplink filter state.
#[derive(Debug)]
pub struct UplinkFilter {
    config: UplinkConfig,
    dedup: Dedup,
}

impl UplinkFilter {
    /// A filter with the given policy.
    pub fn new(config: UplinkConfig) -> UplinkFilter {
        let dedup = Dedup::new(config.dedup_window);
        UplinkFilter { config, dedup }
    }

    /// Decide about one frame received at `now`.
    pub fn classify(&mut self, now: Instant, frame: &RxFrame) -> UplinkVerdict {
        let c = &self.config;
        match frame.meta.crc {
            CrcStatus::Ok if !c.forward_crc_ok => {
                return UplinkVerdict::Drop(DropReason::CrcInvalid)
            }
            CrcStatus::Bad if !c.forward_crc_invalid => {
                return UplinkVerdict::Drop(DropReason::CrcInvalid)
            }
            CrcStatus::Missing if !c.forward_crc_missing => {
                return UplinkVerdict::Drop(DropReason::CrcMissing)
            }
            _ => {}
        }
        let header = match parse_header(&frame.payload) {
            Ok(h) => Some(h),
            // A frame with a bad CRC that the operator asked for is forwarded unparsed.
            Err(_) if frame.meta.crc == CrcStatus::Bad => None,
            Err(_) => return UplinkVerdict::Drop(DropReason::BadHeader),
        };
        match &header {
            Some(Header::Proprietary) => return UplinkVerdict::Proprietary,
            Some(Header::JoinAccept) => return UplinkVerdict::Drop(DropReason::DownlinkType),
            Some(Header::Data {
                mtype, dev_addr, ..
            }) => {
                if matches!(mtype, MType::UnconfirmedDataDown | MType::ConfirmedDataDown) {
                    return UplinkVerdict::Drop(DropReason::DownlinkType);
                }
                if !c.dev_addr_prefixes.is_empty()
                    && !c
                        .dev_addr_prefixes
                        .iter()
                        .any(|p| p.matches(u64::from(*dev_addr)))
                {
                    return UplinkVerdict::Drop(DropReason::DevAddrFiltered);
                }
            }
            Some(Header::JoinRequest { join_eui, .. }) => {
                if !c.join_eui_prefixes.is_empty()
                    && !c
                        .join_eui_prefixes
                        .iter()
                        .any(|p| p.matches(join_eui.as_u64()))
                {
                    return UplinkVerdict::Drop(DropReason::JoinEuiFiltered);
                }
            }
            Some(Header::RejoinRequest) | None => {}
        }
        if self.dedup.is_duplicate(now, &frame.payload) {
            return UplinkVerdict::Drop(DropReason::Duplicate);
        }
        UplinkVerdict::Forward(header)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use drivers::radio::{CodeRate, Modulation, RxMeta};

    use super::*;
    use crate::config::parse_prefix;

    fn config() -> UplinkConfig {
        UplinkConfig {
            forward_crc_ok: true,
            forward_crc_invalid: false,
            forward_crc_missing: false,
            dedup_window: Duration::from_millis(200),
            dev_addr_prefixes: vec![],
            join_eui_prefixes: vec![],
        }
    }

    fn frame(payload: Vec<u8>, crc: CrcStatus) -> RxFrame {
        RxFrame {
            payload,
            meta: RxMeta::single_channel(
                868_100_000,
                Modulation::Lora {
                    sf: 7,
                    bw_hz: 125_000,
                    cr: Some(CodeRate::Cr45),
                },
                0,
                -80,
                Some(7.0),
                crc,
            ),
        }
    }

    fn data_up(dev_addr: u32, fcnt: u16) -> Vec<u8> {
        let mut p = vec![0x40];
        p.extend_from_slice(&dev_addr.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&fcnt.to_le_bytes());
        p.extend_from_slice(&[1, 0xaa, 0, 0, 0, 0]);
        p
    }

    fn join_request(join_eui: u64) -> Vec<u8> {
        let mut p = vec![0x00];
        p.extend_from_slice(&join_eui.to_le_bytes());
        p.extend_from_slice(&[7; 8]);
        p.extend_from_slice(&[1, 2, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn crc_policy() {
        let t = Instant::now();
        let mut f = UplinkFilter::new(config());
        assert!(matches!(
            f.classify(t, &frame(data_up(1, 1), CrcStatus::Ok)),
            UplinkVerdict::Forward(Some(_))
        ));
        assert_eq!(
            f.classify(t, &frame(data_up(1, 2), CrcStatus::Bad)),
            UplinkVerdict::Drop(DropReason::CrcInvalid)
        );
        assert_eq!(
            f.classify(t, &frame(data_up(1, 3), CrcStatus::Missing)),
            UplinkVerdict::Drop(DropReason::CrcMissing)
        );
        let mut c = config();
        c.forward_crc_invalid = true;
        c.forward_crc_missing = true;
        let mut f = UplinkFilter::new(c);
        assert!(matches!(
            f.classify(t, &frame(data_up(1, 2), CrcStatus::Bad)),
            UplinkVerdict::Forward(_)
        ));
        assert!(matches!(
            f.classify(t, &frame(vec![0x40, 1], CrcStatus::Bad)),
            UplinkVerdict::Forward(None)
        ));
        assert!(matches!(
            f.classify(t, &frame(data_up(1, 3), CrcStatus::Missing)),
            UplinkVerdict::Forward(_)
        ));
    }

    #[test]
    fn headers_and_types() {
        let t = Instant::now();
        let mut f = UplinkFilter::new(config());
        assert_eq!(
            f.classify(t, &frame(vec![0x40, 1, 2], CrcStatus::Ok)),
            UplinkVerdict::Drop(DropReason::BadHeader)
        );
        assert_eq!(
            f.classify(t, &frame(vec![0xe0, 1, 2, 3], CrcStatus::Ok)),
            UplinkVerdict::Proprietary
        );
        let mut down = data_up(5, 1);
        down[0] = 0x60;
        assert_eq!(
            f.classify(t, &frame(down, CrcStatus::Ok)),
            UplinkVerdict::Drop(DropReason::DownlinkType)
        );
        assert!(matches!(
            f.classify(t, &frame(join_request(1), CrcStatus::Ok)),
            UplinkVerdict::Forward(Some(Header::JoinRequest { .. }))
        ));
    }

    #[test]
    fn prefix_filters() {
        let t = Instant::now();
        let mut c = config();
        c.dev_addr_prefixes = vec![parse_prefix("26000000/7", 32).unwrap()];
        c.join_eui_prefixes = vec![parse_prefix("70b3d50000000000/24", 64).unwrap()];
        let mut f = UplinkFilter::new(c);
        assert!(matches!(
            f.classify(t, &frame(data_up(0x2601_0001, 1), CrcStatus::Ok)),
            UplinkVerdict::Forward(_)
        ));
        assert_eq!(
            f.classify(t, &frame(data_up(0x0001_0001, 1), CrcStatus::Ok)),
            UplinkVerdict::Drop(DropReason::DevAddrFiltered)
        );
        assert!(matches!(
            f.classify(
                t,
                &frame(join_request(0x70b3_d5aa_0000_0001), CrcStatus::Ok)
            ),
            UplinkVerdict::Forward(_)
        ));
        assert_eq!(
            f.classify(
                t,
                &frame(join_request(0x1111_0000_0000_0001), CrcStatus::Ok)
            ),
            UplinkVerdict::Drop(DropReason::JoinEuiFiltered)
        );
    }

    #[test]
    fn duplicates_dropped_within_window() {
        let t = Instant::now();
        let mut f = UplinkFilter::new(config());
        let p = data_up(9, 9);
        assert!(matches!(
            f.classify(t, &frame(p.clone(), CrcStatus::Ok)),
            UplinkVerdict::Forward(_)
        ));
        assert_eq!(
            f.classify(
                t + Duration::from_millis(50),
                &frame(p.clone(), CrcStatus::Ok)
            ),
            UplinkVerdict::Drop(DropReason::Duplicate)
        );
        assert!(matches!(
            f.classify(t + Duration::from_millis(300), &frame(p, CrcStatus::Ok)),
            UplinkVerdict::Forward(_)
        ));
    }
}
