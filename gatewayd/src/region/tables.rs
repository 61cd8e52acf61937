//! The regional parameter tables (data file): one `static Region` per region.
//!
//! Numbers come from `shared/reference/regions.toml`; comments say where the sources
//! disagree and which value was chosen and why. Regions without a dwell-time payload table
//! repeat their no-dwell sizes in `max_m_dwell` (they never apply a dwell limit).

use drivers::radio::CodeRate;

use super::{Band, ChannelPlan, DataRate, DrKind, DwellTime, Grid, LbtParams, LbtRule, Region};

const fn lora(dr: u8, sf: u8, bw_hz: u32, up: bool, down: bool, m: u16, md: u16) -> DataRate {
    DataRate {
        dr,
        kind: DrKind::Lora { sf, bw_hz },
        uplink: up,
        downlink: down,
        max_m: m,
        max_m_dwell: md,
    }
}

const fn fsk(dr: u8, m: u16) -> DataRate {
    DataRate {
        dr,
        kind: DrKind::Fsk { bitrate: 50_000 },
        uplink: true,
        downlink: true,
        max_m: m,
        max_m_dwell: m,
    }
}

/// LR-FHSS is uplink-only in every region.
const fn lrfhss(dr: u8, ocw_hz: u32, cr: CodeRate, m: u16) -> DataRate {
    DataRate {
        dr,
        kind: DrKind::LrFhss { ocw_hz, cr },
        uplink: true,
        downlink: false,
        max_m: m,
        max_m_dwell: m,
    }
}

const fn band(name: &'static str, min_hz: u64, max_hz: u64, duty: f64, eirp: f32) -> Band {
    Band {
        name,
        min_hz,
        max_hz,
        duty,
        max_eirp_dbm: eirp,
    }
}

const K125: u32 = 125_000;
const K250: u32 = 250_000;
const K500: u32 = 500_000;
const B: bool = true;

const OFFSETS_8: &[i8] = &[0, -2, -4, -6, -8, -10, -12, -14];
const OFFSETS_15: &[i8] = &[
    0, -2, -4, -6, -8, -10, -12, -14, -16, -18, -20, -22, -24, -26, -28,
];

// ---- EU868 -----------------------------------------------------------------------------
// DR4 M = 250 ([TTN]/[LMN], N = 242); [CS]'s non-repeater row {m:250, n:222} is a typo.
const EU868_DRS: &[DataRate] = &[
    lora(0, 12, K125, B, B, 59, 59),
    lora(1, 11, K125, B, B, 59, 59),
    lora(2, 10, K125, B, B, 59, 59),
    lora(3, 9, K125, B, B, 123, 123),
    lora(4, 8, K125, B, B, 250, 250),
    lora(5, 7, K125, B, B, 250, 250),
    lora(6, 7, K250, B, B, 250, 250),
    fsk(7, 250),
    lrfhss(8, 137_000, CodeRate::Cr13, 58),
    lrfhss(9, 137_000, CodeRate::Cr23, 123),
    lrfhss(10, 336_000, CodeRate::Cr13, 58),
    lrfhss(11, 336_000, CodeRate::Cr23, 123),
];

const EU868_RX1: &[&[u8]] = &[
    &[0, 0, 0, 0, 0, 0],
    &[1, 0, 0, 0, 0, 0],
    &[2, 1, 0, 0, 0, 0],
    &[3, 2, 1, 0, 0, 0],
    &[4, 3, 2, 1, 0, 0],
    &[5, 4, 3, 2, 1, 0],
    &[6, 5, 4, 3, 2, 1],
    &[7, 6, 5, 4, 3, 2],
    &[1, 0, 0, 0, 0, 0],
    &[2, 1, 0, 0, 0, 0],
    &[1, 0, 0, 0, 0, 0],
    &[2, 1, 0, 0, 0, 0],
];

/// EU868. Bands: ETSI EN 300 220 sub-bands as [TTN] encodes them (EIRP = ERP + 2.15);
/// band O (869.2–869.4 MHz) is left out as in [TTN]/[LMN]. Band P allows 27 dBm ERP.
pub static EU868: Region = Region {
    name: "EU868",
    data_rates: EU868_DRS,
    channels: ChannelPlan::Dynamic {
        default_channels_hz: &[868_100_000, 868_300_000, 868_500_000],
        center_grid: None,
    },
    bands: &[
        band("K", 863_000_000, 865_000_000, 0.001, 16.15),
        band("L", 865_000_000, 868_000_000, 0.01, 16.15),
        band("M", 868_000_000, 868_600_000, 0.01, 16.15),
        band("N", 868_700_000, 869_200_000, 0.001, 16.15),
        band("P", 869_400_000, 869_650_000, 0.10, 29.15),
        band("R", 869_700_000, 870_000_000, 0.01, 16.15),
    ],
    default_max_eirp_dbm: 16.0,
    tx_power_offsets_db: OFFSETS_8,
    rx1_dr_offset_max: 5,
    rx1_dr_table: EU868_RX1,
    rx1_dr_table_dwell: None,
    rx2_freq_hz: 869_525_000,
    rx2_dr: 0,
    dwell: DwellTime {
        uplink: false,
        downlink: false,
    },
    lbt: LbtRule::None,
};

// ---- US915 / AU915 -----------------------------------------------------------------------
const DOWNLINK_500K_DRS: [DataRate; 6] = [
    lora(8, 12, K500, false, B, 61, 61),
    lora(9, 11, K500, false, B, 137, 137),
    lora(10, 10, K500, false, B, 250, 250),
    lora(11, 9, K500, false, B, 250, 250),
    lora(12, 8, K500, false, B, 250, 250),
    lora(13, 7, K500, false, B, 250, 250),
];

const US915_DRS: &[DataRate] = &[
    lora(0, 10, K125, B, false, 19, 19),
    lora(1, 9, K125, B, false, 61, 61),
    lora(2, 8, K125, B, false, 133, 133),
    lora(3, 7, K125, B, false, 250, 250),
    lora(4, 8, K500, B, false, 250, 250),
    lrfhss(5, 1_523_000, CodeRate::Cr13, 58),
    lrfhss(6, 1_523_000, CodeRate::Cr23, 133),
    DOWNLINK_500K_DRS[0],
    DOWNLINK_500K_DRS[1],
    DOWNLINK_500K_DRS[2],
    DOWNLINK_500K_DRS[3],
    DOWNLINK_500K_DRS[4],
    DOWNLINK_500K_DRS[5],
];

const DOWNLINK_923: Grid = Grid {
    first_hz: 923_300_000,
    step_hz: 600_000,
    count: 8,
    bw_hz: K500,
};

/// US915. The uplink payload table already fits the 400 ms uplink dwell limit (FCC).
/// Bands: [TTN] sub-band caps (21 + 2.15 dBm EIRP on 902.3–914.9 MHz, 26 + 2.15 on
/// 923.3–927.5 MHz), widened to the spectrum the channels occupy; FCC 15.247, no duty cycle.
pub static US915: Region = Region {
    name: "US915",
    data_rates: US915_DRS,
    channels: ChannelPlan::Fixed {
        uplink_125k: Grid {
            first_hz: 902_300_000,
            step_hz: 200_000,
            count: 64,
            bw_hz: K125,
        },
        uplink_500k: Some(Grid {
            first_hz: 903_000_000,
            step_hz: 1_600_000,
            count: 8,
            bw_hz: K500,
        }),
        downlink: DOWNLINK_923,
        sub_bands: true,
    },
    bands: &[
        band("902-915", 902_000_000, 915_000_000, 1.0, 23.15),
        band("923-928", 923_000_000, 928_000_000, 1.0, 28.15),
    ],
    default_max_eirp_dbm: 30.0,
    tx_power_offsets_db: OFFSETS_15,
    rx1_dr_offset_max: 3,
    rx1_dr_table: &[
        &[10, 9, 8, 8],
        &[11, 10, 9, 8],
        &[12, 11, 10, 9],
        &[13, 12, 11, 10],
        &[13, 13, 12, 11],
        &[10, 9, 8, 8],
        &[11, 10, 9, 8],
    ],
    rx1_dr_table_dwell: None,
    rx2_freq_hz: 923_300_000,
    rx2_dr: 8,
    dwell: DwellTime {
        uplink: true,
        downlink: false,
    },
    lbt: LbtRule::None,
};

const AU915_DRS: &[DataRate] = &[
    lora(0, 12, K125, B, false, 59, 0),
    lora(1, 11, K125, B, false, 59, 0),
    lora(2, 10, K125, B, false, 59, 19),
    lora(3, 9, K125, B, false, 123, 61),
    lora(4, 8, K125, B, false, 250, 133),
    lora(5, 7, K125, B, false, 250, 250),
    lora(6, 8, K500, B, false, 250, 250),
    lrfhss(7, 1_523_000, CodeRate::Cr13, 58),
    DOWNLINK_500K_DRS[0],
    DOWNLINK_500K_DRS[1],
    DOWNLINK_500K_DRS[2],
    DOWNLINK_500K_DRS[3],
    DOWNLINK_500K_DRS[4],
    DOWNLINK_500K_DRS[5],
];

/// AU915. RX1 DR table: the RP002 one (not [TTN]'s legacy US915-like table).
/// One band 915–928 MHz at the default 30 dBm EIRP; no duty cycle.
pub static AU915: Region = Region {
    name: "AU915",
    data_rates: AU915_DRS,
    channels: ChannelPlan::Fixed {
        uplink_125k: Grid {
            first_hz: 915_200_000,
            step_hz: 200_000,
            count: 64,
            bw_hz: K125,
        },
        uplink_500k: Some(Grid {
            first_hz: 915_900_000,
            step_hz: 1_600_000,
            count: 8,
            bw_hz: K500,
        }),
        downlink: DOWNLINK_923,
        sub_bands: true,
    },
    bands: &[band("915-928", 915_000_000, 928_000_000, 1.0, 30.0)],
    default_max_eirp_dbm: 30.0,
    tx_power_offsets_db: OFFSETS_15,
    rx1_dr_offset_max: 5,
    rx1_dr_table: &[
        &[8, 8, 8, 8, 8, 8],
        &[9, 8, 8, 8, 8, 8],
        &[10, 9, 8, 8, 8, 8],
        &[11, 10, 9, 8, 8, 8],
        &[12, 11, 10, 9, 8, 8],
        &[13, 12, 11, 10, 9, 8],
        &[13, 13, 12, 11, 10, 9],
        &[9, 8, 8, 8, 8, 8],
    ],
    rx1_dr_table_dwell: None,
    rx2_freq_hz: 923_300_000,
    rx2_dr: 8,
    dwell: DwellTime {
        uplink: true,
        downlink: false,
    },
    lbt: LbtRule::None,
};

// ---- AS923 -------------------------------------------------------------------------------
const AS923_DRS: &[DataRate] = &[
    lora(0, 12, K125, B, B, 59, 0),
    lora(1, 11, K125, B, B, 59, 0),
    lora(2, 10, K125, B, B, 123, 19),
    lora(3, 9, K125, B, B, 123, 61),
    lora(4, 8, K125, B, B, 250, 133),
    lora(5, 7, K125, B, B, 250, 250),
    lora(6, 7, K250, B, B, 250, 250),
    fsk(7, 250),
];

const AS923_RX1: &[&[u8]] = &[
    &[0, 0, 0, 0, 0, 0, 1, 2],
    &[1, 0, 0, 0, 0, 0, 2, 3],
    &[2, 1, 0, 0, 0, 0, 3, 4],
    &[3, 2, 1, 0, 0, 0, 4, 5],
    &[4, 3, 2, 1, 0, 0, 5, 6],
    &[5, 4, 3, 2, 1, 0, 6, 7],
    &[6, 5, 4, 3, 2, 1, 7, 7],
    &[7, 6, 5, 4, 3, 2, 7, 7],
];

const AS923_RX1_DWELL: &[&[u8]] = &[
    &[2, 2, 2, 2, 2, 2, 2, 2],
    &[2, 2, 2, 2, 2, 2, 2, 3],
    &[2, 2, 2, 2, 2, 2, 3, 4],
    &[3, 2, 2, 2, 2, 2, 4, 5],
    &[4, 3, 2, 2, 2, 2, 5, 6],
    &[5, 4, 3, 2, 2, 2, 6, 7],
    &[6, 5, 4, 3, 2, 2, 7, 7],
    &[7, 6, 5, 4, 3, 2, 7, 7],
];

/// AS923 duty cycle: regions.toml gives 1 % for the region, [TTN] applies it only to a
/// 0.5 MHz sub-band per group and [LMN] not at all (except Japan). Chosen: 1 % over the
/// whole 915–928 MHz AS923 range ([LMN] `VerifyRfFreq` limits), at the default 16 dBm EIRP:
/// the strictest reading, so no group's local rules are exceeded.
const AS923_BANDS: &[Band] = &[band("AS923", 915_000_000, 928_000_000, 0.01, 16.0)];

/// Japan (ARIB STD-T108, [LMN]): LBT at −80 dBm for 5 ms over 200 kHz, EIRP ≤ 13 dBm, DR ≤ 5.
const JAPAN: LbtRule = LbtRule::Japan {
    params: LbtParams {
        rssi_threshold_dbm: -80,
        carrier_sense_ms: 5,
        bandwidth_hz: 200_000,
    },
    max_eirp_dbm: 13.0,
    max_dr: 5,
};

macro_rules! as923 {
    ($name:literal, $ch:expr, $rx2:expr, $lbt:expr) => {
        Region {
            name: $name,
            data_rates: AS923_DRS,
            channels: ChannelPlan::Dynamic {
                default_channels_hz: &$ch,
                center_grid: None,
            },
            bands: AS923_BANDS,
            default_max_eirp_dbm: 16.0,
            tx_power_offsets_db: OFFSETS_8,
            rx1_dr_offset_max: 7,
            rx1_dr_table: AS923_RX1,
            rx1_dr_table_dwell: Some(AS923_RX1_DWELL),
            rx2_freq_hz: $rx2,
            rx2_dr: 2,
            // [LMN] default: uplink dwell on, downlink off; TxParamSetupReq may change it.
            dwell: DwellTime {
                uplink: true,
                downlink: false,
            },
            lbt: $lbt,
        }
    };
}

/// AS923-1 (also Japan's plan: LBT under Japanese rules).
pub static AS923_1: Region = as923!("AS923-1", [923_200_000, 923_400_000], 923_200_000, JAPAN);
/// AS923-2 (offset −1.8 MHz).
pub static AS923_2: Region = as923!(
    "AS923-2",
    [921_400_000, 921_600_000],
    921_400_000,
    LbtRule::None
);
/// AS923-3 (offset −6.6 MHz). RX2 916.6 MHz as [TTN]/[CS]/[LMN] compute it (923.2 − 6.6);
/// [LRS]'s hard-coded 916.5 MHz is off the group's channel raster.
pub static AS923_3: Region = as923!(
    "AS923-3",
    [916_600_000, 916_800_000],
    916_600_000,
    LbtRule::None
);
/// AS923-4 (offset −5.9 MHz).
pub static AS923_4: Region = as923!(
    "AS923-4",
    [917_300_000, 917_500_000],
    917_300_000,
    LbtRule::None
);

// ---- IN865 -------------------------------------------------------------------------------
/// IN865. DR6 is RFU. RX1 table from [LMN]: [CS]'s rows (DR5 → 5 at offset 7, DR7 → 6 at
/// offset 1) differ, and [CS]'s DR7 row yields the RFU DR6, so [LMN]'s is taken.
/// EIRP: the [TTN] sub-band's 16.15 dBm, lower than the 30 dBm device default.
pub static IN865: Region = Region {
    name: "IN865",
    data_rates: &[
        lora(0, 12, K125, B, B, 59, 59),
        lora(1, 11, K125, B, B, 59, 59),
        lora(2, 10, K125, B, B, 59, 59),
        lora(3, 9, K125, B, B, 123, 123),
        lora(4, 8, K125, B, B, 250, 250),
        lora(5, 7, K125, B, B, 250, 250),
        fsk(7, 250),
    ],
    channels: ChannelPlan::Dynamic {
        default_channels_hz: &[865_062_500, 865_402_500, 865_985_000],
        center_grid: None,
    },
    bands: &[band("865-867", 865_000_000, 867_000_000, 1.0, 16.15)],
    default_max_eirp_dbm: 30.0,
    // RP002 IN865 TXPower 0..10 (not listed in regions.toml).
    tx_power_offsets_db: &[0, -2, -4, -6, -8, -10, -12, -14, -16, -18, -20],
    rx1_dr_offset_max: 7,
    rx1_dr_table: &[
        &[0, 0, 0, 0, 0, 0, 1, 2],
        &[1, 0, 0, 0, 0, 0, 2, 3],
        &[2, 1, 0, 0, 0, 0, 3, 4],
        &[3, 2, 1, 0, 0, 0, 4, 5],
        &[4, 3, 2, 1, 0, 0, 5, 5],
        &[5, 4, 3, 2, 1, 0, 5, 7],
        &[],
        &[7, 5, 5, 4, 3, 2, 7, 7],
    ],
    rx1_dr_table_dwell: None,
    rx2_freq_hz: 866_550_000,
    rx2_dr: 2,
    dwell: DwellTime {
        uplink: false,
        downlink: false,
    },
    lbt: LbtRule::None,
};

// ---- KR920 / CN470 -----------------------------------------------------------------------
const SF12_TO_SF7: &[DataRate] = &[
    lora(0, 12, K125, B, B, 59, 59),
    lora(1, 11, K125, B, B, 59, 59),
    lora(2, 10, K125, B, B, 59, 59),
    lora(3, 9, K125, B, B, 123, 123),
    lora(4, 8, K125, B, B, 250, 250),
    lora(5, 7, K125, B, B, 250, 250),
];

const RX1_SIX: &[&[u8]] = &[
    &[0, 0, 0, 0, 0, 0],
    &[1, 0, 0, 0, 0, 0],
    &[2, 1, 0, 0, 0, 0],
    &[3, 2, 1, 0, 0, 0],
    &[4, 3, 2, 1, 0, 0],
    &[5, 4, 3, 2, 1, 0],
];

/// KR920. EIRP: sources disagree ([TTN] 14 + 2.15 dBm over 920–923 MHz, [CS] 23 dBm
/// gateway default, [LMN] 10 dBm below 922.1 MHz and 14 dBm from 922.1 MHz). [LMN]'s split
/// is the strictest and is taken. Channel centres on the [LMN] 920.9–923.3 MHz grid.
/// LBT always required ([LMN] RegionKR920.c).
pub static KR920: Region = Region {
    name: "KR920",
    data_rates: SF12_TO_SF7,
    channels: ChannelPlan::Dynamic {
        default_channels_hz: &[922_100_000, 922_300_000, 922_500_000],
        center_grid: Some(Grid {
            first_hz: 920_900_000,
            step_hz: 200_000,
            count: 13,
            bw_hz: K125,
        }),
    },
    bands: &[
        band("920.9-921.9", 920_800_000, 922_000_000, 1.0, 10.0),
        band("922.1-923.3", 922_000_000, 923_400_000, 1.0, 14.0),
    ],
    default_max_eirp_dbm: 14.0,
    tx_power_offsets_db: OFFSETS_8,
    rx1_dr_offset_max: 5,
    rx1_dr_table: RX1_SIX,
    rx1_dr_table_dwell: None,
    rx2_freq_hz: 921_900_000,
    rx2_dr: 0,
    dwell: DwellTime {
        uplink: false,
        downlink: false,
    },
    lbt: LbtRule::Required(LbtParams {
        rssi_threshold_dbm: -65,
        carrier_sense_ms: 6,
        bandwidth_hz: 200_000,
    }),
};

/// CN470, the classic RP001 1.1rB plan ([TTN]/[CS]), not the RP002 20/26 MHz plans.
pub static CN470: Region = Region {
    name: "CN470",
    data_rates: SF12_TO_SF7,
    channels: ChannelPlan::Fixed {
        uplink_125k: Grid {
            first_hz: 470_300_000,
            step_hz: 200_000,
            count: 96,
            bw_hz: K125,
        },
        uplink_500k: None,
        downlink: Grid {
            first_hz: 500_300_000,
            step_hz: 200_000,
            count: 48,
            bw_hz: K125,
        },
        sub_bands: false,
    },
    bands: &[band("470-510", 470_000_000, 510_000_000, 1.0, 19.15)],
    default_max_eirp_dbm: 19.15,
    tx_power_offsets_db: OFFSETS_8,
    rx1_dr_offset_max: 5,
    rx1_dr_table: RX1_SIX,
    rx1_dr_table_dwell: None,
    rx2_freq_hz: 505_300_000,
    rx2_dr: 0,
    dwell: DwellTime {
        uplink: false,
        downlink: false,
    },
    lbt: LbtRule::None,
};

// ---- RU864 / EU433 -----------------------------------------------------------------------
const EU_DR0_TO_DR7: &[DataRate] = &[
    lora(0, 12, K125, B, B, 59, 59),
    lora(1, 11, K125, B, B, 59, 59),
    lora(2, 10, K125, B, B, 59, 59),
    lora(3, 9, K125, B, B, 123, 123),
    lora(4, 8, K125, B, B, 250, 250),
    lora(5, 7, K125, B, B, 250, 250),
    lora(6, 7, K250, B, B, 250, 250),
    fsk(7, 250),
];

/// RU864. EIRP: [TTN]'s sub-band says 22.15 dBm, the region default is 16 dBm; the lower
/// 16 dBm is taken (the guard never exceeds what any source allows). Duty cycle 1 %.
pub static RU864: Region = Region {
    name: "RU864",
    data_rates: EU_DR0_TO_DR7,
    channels: ChannelPlan::Dynamic {
        default_channels_hz: &[868_900_000, 869_100_000],
        center_grid: None,
    },
    bands: &[band("864-870", 864_000_000, 870_000_000, 0.01, 16.0)],
    default_max_eirp_dbm: 16.0,
    tx_power_offsets_db: OFFSETS_8,
    rx1_dr_offset_max: 5,
    rx1_dr_table: &EU868_RX1_0_TO_7,
    rx1_dr_table_dwell: None,
    rx2_freq_hz: 869_100_000,
    rx2_dr: 0,
    dwell: DwellTime {
        uplink: false,
        downlink: false,
    },
    lbt: LbtRule::None,
};

const EU868_RX1_0_TO_7: [&[u8]; 8] = [
    EU868_RX1[0],
    EU868_RX1[1],
    EU868_RX1[2],
    EU868_RX1[3],
    EU868_RX1[4],
    EU868_RX1[5],
    EU868_RX1[6],
    EU868_RX1[7],
];

/// EU433. Duty cycle: sources disagree ([TTN] 10 %, [LMN] 1 %); 1 % is taken because the
/// guard must never be over budget whichever source is right (cost: downlink capacity).
/// The band is ETSI h1.4, 433.05–434.79 MHz (the sources' 433.175–434.665 MHz are channel
/// centres), at 12.15 dBm EIRP (10 mW ERP).
pub static EU433: Region = Region {
    name: "EU433",
    data_rates: EU_DR0_TO_DR7,
    channels: ChannelPlan::Dynamic {
        default_channels_hz: &[433_175_000, 433_375_000, 433_575_000],
        center_grid: None,
    },
    bands: &[band("433", 433_050_000, 434_790_000, 0.01, 12.15)],
    default_max_eirp_dbm: 12.15,
    tx_power_offsets_db: &[0, -2, -4, -6, -8, -10],
    rx1_dr_offset_max: 5,
    rx1_dr_table: &EU868_RX1_0_TO_7,
    rx1_dr_table_dwell: None,
    rx2_freq_hz: 434_665_000,
    rx2_dr: 0,
    dwell: DwellTime {
        uplink: false,
        downlink: false,
    },
    lbt: LbtRule::None,
};
