//! Consistency checks over every region and pins for the choices made where sources disagree.

use drivers::airtime::{time_on_air, FrameShape};
use drivers::radio::{CodeRate, Modulation};

use super::*;
use crate::config::REGIONS as CONFIG_REGIONS;

fn lora(sf: u8, bw_hz: u32) -> Modulation {
    Modulation::Lora {
        sf,
        bw_hz,
        cr: Some(CodeRate::Cr45),
    }
}

fn modulation_of(kind: DrKind) -> Modulation {
    match kind {
        DrKind::Lora { sf, bw_hz } => lora(sf, bw_hz),
        DrKind::Fsk { bitrate } => Modulation::Fsk { bitrate },
        DrKind::LrFhss { ocw_hz, cr } => Modulation::LrFhss {
            ocw_hz,
            cr,
            grid_steps: 0,
        },
    }
}

#[test]
fn every_config_region_exists_and_names_are_unique() {
    assert_eq!(CONFIG_REGIONS.len(), REGIONS.len());
    for name in CONFIG_REGIONS {
        let r = Region::by_name(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(r.name, *name);
    }
    assert!(Region::by_name("eu868").is_none());
    assert!(Region::by_name("EU999").is_none());
}

#[test]
fn data_rates_are_consistent() {
    for r in REGIONS {
        let mut last = None;
        for d in r.data_rates {
            assert!(
                last.is_none_or(|l| d.dr > l),
                "{}: DRs out of order",
                r.name
            );
            last = Some(d.dr);
            assert!(d.uplink || d.downlink, "{} DR{} unusable", r.name, d.dr);
            assert!(usize::from(d.max_m) + 5 <= MAX_PHY_PAYLOAD, "{}", r.name);
            assert!(d.max_m_dwell <= d.max_m, "{} DR{}", r.name, d.dr);
            if let DrKind::LrFhss { .. } = d.kind {
                assert!(!d.downlink, "{} DR{}: LR-FHSS is uplink-only", r.name, d.dr);
            }
            // dr_for_direction finds the DR back from its modulation.
            let m = modulation_of(d.kind);
            let dir = if d.uplink {
                Direction::Uplink
            } else {
                Direction::Downlink
            };
            assert_eq!(r.dr_for_direction(&m, dir), Some(d.dr), "{}", r.name);
            assert_eq!(r.data_rate(d.dr), Some(d));
        }
        assert!(
            r.data_rate(r.rx2_dr).is_some_and(|d| d.downlink),
            "{}",
            r.name
        );
    }
}

#[test]
fn dwell_payload_tables_fit_400_ms() {
    // Wherever a region applies the uplink dwell limit, its dwell sizes fit 400 ms (CRC on).
    for r in REGIONS.iter().filter(|r| r.dwell.uplink) {
        for d in r.data_rates.iter().filter(|d| d.uplink) {
            if matches!(d.kind, DrKind::LrFhss { .. }) || d.max_m_dwell == 0 {
                continue;
            }
            let phy = usize::from(d.max_m_dwell) + 5;
            let t = time_on_air(&modulation_of(d.kind), &FrameShape::lorawan(phy, true));
            assert!(t <= DWELL_TIME_LIMIT, "{} DR{}: {t:?}", r.name, d.dr);
        }
    }
    // DR0/DR1 are forbidden under dwell in AS923 and AU915.
    for name in ["AS923-1", "AU915"] {
        let r = Region::by_name(name).unwrap();
        assert_eq!(r.max_payload(0, true), None);
        assert_eq!(r.max_payload(1, true), None);
        assert_eq!(r.max_payload(2, true), Some(19));
        assert_eq!(r.max_payload(0, false), Some(59));
    }
}

#[test]
fn rx1_tables_cover_every_dr_and_offset_and_yield_downlink_drs() {
    for r in REGIONS {
        let tables = [Some(r.rx1_dr_table), r.rx1_dr_table_dwell];
        for table in tables.into_iter().flatten() {
            for (up, row) in table.iter().enumerate() {
                if row.is_empty() {
                    assert!(r.data_rate(up as u8).is_none(), "{} DR{up}", r.name);
                    continue;
                }
                assert!(r.data_rate(up as u8).is_some_and(|d| d.uplink));
                assert_eq!(
                    row.len(),
                    usize::from(r.rx1_dr_offset_max) + 1,
                    "{}",
                    r.name
                );
                for dr in row.iter() {
                    let d = r
                        .data_rate(*dr)
                        .unwrap_or_else(|| panic!("{} DR{dr}", r.name));
                    assert!(d.downlink, "{}: RX1 DR{dr} is not a downlink DR", r.name);
                }
            }
            // Every uplink DR has a row (LR-FHSS included).
            for d in r.data_rates.iter().filter(|d| d.uplink) {
                assert!(
                    !table[usize::from(d.dr)].is_empty(),
                    "{} DR{}",
                    r.name,
                    d.dr
                );
            }
        }
    }
}

#[test]
fn rx1_frequency_rules() {
    let eu = Region::by_name("EU868").unwrap();
    assert_eq!(eu.rx1(868_300_000, 5, 0), Ok((868_300_000, 5)));
    assert_eq!(eu.rx1(868_300_000, 5, 2), Ok((868_300_000, 3)));
    assert!(matches!(
        eu.rx1(868_300_000, 5, 6),
        Err(RegionError::Rx1OffsetTooLarge { .. })
    ));
    assert!(matches!(
        eu.rx1(915_000_000, 5, 0),
        Err(RegionError::NotAnUplinkChannel { .. })
    ));
    assert!(matches!(
        eu.rx1(868_100_000, 12, 0),
        Err(RegionError::UnknownDataRate { .. })
    ));

    let us = Region::by_name("US915").unwrap();
    // Channel 8 (903.9 MHz) → downlink channel 0; channel 9 (904.1) → 1; 500 kHz ch 65 → 1.
    assert_eq!(us.rx1(903_900_000, 0, 0), Ok((923_300_000, 10)));
    assert_eq!(us.rx1(904_100_000, 3, 1), Ok((923_900_000, 12)));
    assert_eq!(us.rx1(904_600_000, 4, 0), Ok((923_900_000, 13)));
    assert_eq!(us.rx1(914_900_000, 2, 3), Ok((927_500_000, 9)));
    assert!(us.rx1(903_950_000, 0, 0).is_err());
    assert_eq!(us.rx2(), (923_300_000, 8));

    let au = Region::by_name("AU915").unwrap();
    assert_eq!(au.rx1(916_800_000, 2, 0), Ok((923_300_000, 10)));
    assert_eq!(au.rx1(915_900_000, 6, 0), Ok((923_300_000, 13)));

    let cn = Region::by_name("CN470").unwrap();
    // Channel 50 = 480.3 MHz → downlink channel 2 = 500.7 MHz.
    assert_eq!(cn.rx1(480_300_000, 5, 1), Ok((500_700_000, 4)));
    assert_eq!(cn.rx1(470_300_000, 0, 0), Ok((500_300_000, 0)));

    let as1 = Region::by_name("AS923-1").unwrap();
    assert_eq!(as1.rx1(923_200_000, 5, 6), Ok((923_200_000, 6)));
    assert_eq!(
        as1.rx1_with_dwell(923_200_000, 0, 0, true),
        Ok((923_200_000, 2))
    );
}

#[test]
fn channels_and_band_edges() {
    let eu = Region::by_name("EU868").unwrap();
    for f in [868_100_000, 868_300_000, 868_500_000, 869_525_000] {
        assert!(eu.is_tx_frequency_allowed(f, 125_000), "{f}");
    }
    // 868.55 MHz: the 125 kHz signal pokes out of band M (868.0–868.6).
    assert!(!eu.is_tx_frequency_allowed(868_550_000, 125_000));
    assert!(eu.is_tx_frequency_allowed(868_537_500, 125_000));
    // Band O (869.2–869.4) is not usable; 915 MHz is out of region.
    assert!(!eu.is_tx_frequency_allowed(869_300_000, 125_000));
    assert!(!eu.is_tx_frequency_allowed(915_000_000, 125_000));

    let us = Region::by_name("US915").unwrap();
    let down = Direction::Downlink;
    let up = Direction::Uplink;
    assert!(us.is_channel_allowed(923_300_000, 500_000, down, None));
    assert!(us.is_channel_allowed(927_500_000, 500_000, down, Some(2)));
    assert!(!us.is_channel_allowed(923_400_000, 500_000, down, None));
    assert!(!us.is_channel_allowed(903_900_000, 125_000, down, None));
    // Sub-band 2 = channels 8..15 (903.9–905.3 MHz) + 500 kHz channel 65 (904.6 MHz).
    assert!(us.is_channel_allowed(903_900_000, 125_000, up, Some(2)));
    assert!(us.is_channel_allowed(905_300_000, 125_000, up, Some(2)));
    assert!(!us.is_channel_allowed(905_500_000, 125_000, up, Some(2)));
    assert!(us.is_channel_allowed(904_600_000, 500_000, up, Some(2)));
    assert!(!us.is_channel_allowed(903_000_000, 500_000, up, Some(2)));
    assert!(us.is_channel_allowed(905_500_000, 125_000, up, None));

    let kr = Region::by_name("KR920").unwrap();
    assert!(kr.is_tx_frequency_allowed(922_100_000, 125_000));
    assert!(kr.is_tx_frequency_allowed(923_300_000, 125_000));
    assert!(!kr.is_tx_frequency_allowed(922_200_000, 125_000));
    assert!(!kr.is_tx_frequency_allowed(923_500_000, 125_000));

    let cn = Region::by_name("CN470").unwrap();
    assert!(cn.is_channel_allowed(505_300_000, 125_000, down, None));
    assert!(!cn.is_channel_allowed(470_300_000, 125_000, down, None));
    assert!(cn.is_channel_allowed(470_300_000, 125_000, up, None));
}

#[test]
fn default_channels_and_rx2_lie_inside_bands_and_channels() {
    for r in REGIONS {
        let (rx2, dr) = r.rx2();
        let bw = occupied_bandwidth_hz(&modulation_of(r.data_rate(dr).unwrap().kind));
        assert!(
            r.is_channel_allowed(rx2, bw, Direction::Downlink, None),
            "{} RX2",
            r.name
        );
        match r.channels {
            ChannelPlan::Dynamic {
                default_channels_hz,
                ..
            } => {
                for f in default_channels_hz {
                    assert!(r.is_channel_allowed(*f, 125_000, Direction::Uplink, None));
                    assert!(r.is_channel_allowed(*f, 125_000, Direction::Downlink, None));
                    // RX1 for a default channel is the same frequency.
                    assert_eq!(r.rx1(*f, 0, 0).map(|x| x.0), Ok(*f), "{}", r.name);
                }
            }
            ChannelPlan::Fixed {
                uplink_125k,
                uplink_500k,
                downlink,
                ..
            } => {
                for g in [Some(uplink_125k), uplink_500k, Some(downlink)]
                    .into_iter()
                    .flatten()
                {
                    for i in 0..g.count {
                        let f = g.freq(i).unwrap();
                        assert!(r.band_for(f, g.bw_hz).is_some(), "{} {f}", r.name);
                        assert_eq!(g.index_of(f), Some(i));
                    }
                }
            }
        }
        // Bands do not overlap, so the duty-cycle band of a frequency is unambiguous.
        for (i, a) in r.bands.iter().enumerate() {
            assert!(a.min_hz < a.max_hz && a.duty > 0.0 && a.duty <= 1.0);
            for b in &r.bands[i + 1..] {
                assert!(a.max_hz <= b.min_hz || b.max_hz <= a.min_hz, "{}", r.name);
            }
        }
    }
}

#[test]
fn limits_where_sources_disagree() {
    let eu = Region::by_name("EU868").unwrap();
    assert_eq!(eu.max_payload(4, false), Some(250));
    assert_eq!(eu.max_eirp_dbm(869_525_000), Some(29.15));
    assert_eq!(eu.max_eirp_dbm(868_100_000), Some(16.15));
    let p = eu.duty_cycle_band(869_525_000).unwrap();
    assert_eq!((p.name, p.duty), ("P", 0.10));
    assert_eq!(
        p.budget_per_hour(),
        Some(std::time::Duration::from_secs(360))
    );
    assert_eq!(eu.duty_cycle_band(868_100_000).unwrap().name, "M");
    assert_eq!(eu.duty_cycle_band(864_000_000).unwrap().duty, 0.001);

    let eu433 = Region::by_name("EU433").unwrap();
    assert_eq!(eu433.duty_cycle_band(433_175_000).unwrap().duty, 0.01);
    assert_eq!(Region::by_name("AS923-3").unwrap().rx2().0, 916_600_000);
    let kr = Region::by_name("KR920").unwrap();
    assert_eq!(kr.max_eirp_dbm(921_900_000), Some(10.0));
    assert_eq!(kr.max_eirp_dbm(922_100_000), Some(14.0));
    assert!(matches!(kr.lbt, LbtRule::Required(p) if p.rssi_threshold_dbm == -65));
    assert_eq!(
        Region::by_name("RU864").unwrap().max_eirp_dbm(869_100_000),
        Some(16.0)
    );
    let us = Region::by_name("US915").unwrap();
    assert_eq!(us.max_eirp_dbm(923_300_000), Some(28.15));
    assert_eq!(
        us.duty_cycle_band(923_300_000).unwrap().budget_per_hour(),
        None
    );

    // IN865 RX1 follows [LMN]; no entry yields the RFU DR6.
    let ind = Region::by_name("IN865").unwrap();
    assert_eq!(ind.rx1(865_062_500, 5, 7), Ok((865_062_500, 7)));
    assert_eq!(ind.rx1(865_062_500, 7, 1), Ok((865_062_500, 5)));
    assert!(ind.data_rate(6).is_none());
    assert!(ind.rx1_dr_table.iter().all(|row| !row.contains(&6)));
}

#[test]
fn dr_lookup_distinguishes_direction() {
    let us = Region::by_name("US915").unwrap();
    assert_eq!(
        us.dr_for_direction(&lora(8, 500_000), Direction::Uplink),
        Some(4)
    );
    assert_eq!(
        us.dr_for_direction(&lora(8, 500_000), Direction::Downlink),
        Some(12)
    );
    assert_eq!(
        us.dr_for_direction(&lora(12, 125_000), Direction::Downlink),
        None
    );
    assert_eq!(us.dr_for(&lora(10, 125_000)), Some(0));
    let eu = Region::by_name("EU868").unwrap();
    assert_eq!(eu.dr_for(&Modulation::Fsk { bitrate: 50_000 }), Some(7));
    assert_eq!(eu.dr_for(&lora(7, 500_000)), None);
    let lr = Modulation::LrFhss {
        ocw_hz: 137_000,
        cr: CodeRate::Cr23,
        grid_steps: 52,
    };
    assert_eq!(eu.dr_for(&lr), Some(9));
    assert_eq!(eu.dr_for_direction(&lr, Direction::Downlink), None);
}
