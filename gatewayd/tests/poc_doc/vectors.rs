//! The test vectors of docs/proof-of-coverage.md §10: fixed keys (RFC 8032's test seeds), an
//! entropy command, a beacon, a witness, a receipt chain, onboarding statements and some
//! tampered reports, built through the library and rendered as the doc's section and the
//! files in docs/poc-vectors/. Where the doc gives a formula (beacon body, frequency, chain,
//! signed message) the vector is also recomputed here from the formula alone, so the doc's
//! prose is checked too, not only the code against itself.

use ring::digest::{digest, SHA256};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use gatewayd::poc::beacon::{plan, BeaconPlan, BeaconWindow};
use gatewayd::poc::entropy::EntropyCommand;
use gatewayd::poc::identity::{hex, IdentityError, PublicKey, Signer};
use gatewayd::poc::receipt::{genesis, ReceiptChain, TransferReceipt};
use gatewayd::poc::report::{BeaconReport, Onboarding, WitnessReport, SIGNING_DOMAIN};
use gatewayd::poc::wire::{PositionSource, TimeSource, WirePosition};
use gatewayd::poc::{Body, Report, SignedReport};
use gatewayd::region::Region;

use crate::layout::{beacon_fields, layout, receipt_fields, witness_fields};

/// RFC 8032 §7.1 TEST 1, 2 and 3: (secret key = seed, public key).
pub const RFC8032: [(&str, &str); 3] = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
    ),
];

/// 2026-01-01T00:00:00Z in Unix seconds: the start of the vectors' window.
const T0_S: u64 = 1_767_225_600;
/// The window: an hour (the production minimum).
pub const WINDOW: BeaconWindow = BeaconWindow {
    len_s: 3600,
    id: T0_S / 3600,
};
/// When `gatewayd poc verify` is told the reports arrived: the window's end.
pub const AT_MS: u64 = T0_S * 1000 + 3_600_000;
const HOUR_MS: u64 = 3_600_000;

/// A key from a 32-byte seed.
pub struct SeedKey(Ed25519KeyPair);

impl SeedKey {
    fn new(seed_hex: &str) -> SeedKey {
        SeedKey(Ed25519KeyPair::from_seed_unchecked(&unhex(seed_hex)).unwrap())
    }
}

impl Signer for SeedKey {
    fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key().as_ref().try_into().unwrap())
    }
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], IdentityError> {
        Ok(self.0.sign(message).as_ref().try_into().unwrap())
    }
}

pub fn unhex(s: &str) -> Vec<u8> {
    gatewayd::poc::wire::from_hex(s).unwrap()
}

fn sha256(b: &[u8]) -> Vec<u8> {
    digest(&SHA256, b).as_ref().to_vec()
}

/// `n` consecutive bytes from `first`.
fn counting(first: u8) -> [u8; 32] {
    std::array::from_fn(|i| first + i as u8)
}

fn eu868() -> &'static Region {
    Region::by_name("EU868").unwrap()
}

/// The PKCS#8 v2 document of `seed` as `ring` writes it (83 bytes).
fn pkcs8_v2(seed: &[u8], public: &[u8]) -> Vec<u8> {
    [
        &unhex("3051020101300506032b657004220420")[..],
        seed,
        &unhex("812100"),
        public,
    ]
    .concat()
}

/// One line of the expected verdicts: the report and the verdict name it must get.
pub struct Expected {
    /// What the report is, for people.
    pub what: String,
    /// Its hex line.
    pub hex: String,
    /// The stable verdict name.
    pub verdict: &'static str,
}

/// Everything the vectors produce.
pub struct Vectors {
    /// The doc's generated section §10.
    pub doc: String,
    /// docs/poc-vectors/reports.txt
    pub reports_txt: String,
    /// docs/poc-vectors/uplinks.txt
    pub uplinks_txt: String,
    /// docs/poc-vectors/verdicts.txt
    pub verdicts_txt: String,
    /// The reports in file order, with their expected verdicts.
    pub expected: Vec<Expected>,
    /// Key A's PKCS#8 document and address (for `gatewayd keys show`).
    pub key_a: (Vec<u8>, String),
}

fn sign(key: &SeedKey, created_ms: u64, deadline_ms: u64, body: Body) -> SignedReport {
    let r = Report {
        key: key.public_key(),
        created_ms,
        deadline_ms,
        body,
    }
    .sign(key)
    .unwrap();
    // The signature is Ed25519 over the domain and the bytes before it (§6.1), recomputed.
    let n = r.bytes().len() - 64;
    let message = [SIGNING_DOMAIN, &r.bytes()[..n]].concat();
    assert_eq!(&message[..16], b"gatewayd-poc-v1\0");
    UnparsedPublicKey::new(&ED25519, key.public_key().0)
        .verify(&message, &r.bytes()[n..])
        .expect("the signature verifies over domain ‖ bytes[0..54+n]");
    r
}

/// The beacon of `key` in [`WINDOW`], checked against the formulas of §5.
fn beacon_plan(key: &SeedKey, local: &[u8; 32]) -> (BeaconPlan, Vec<u8>) {
    let entropy = counting(0x00);
    let p = plan(eu868(), None, &entropy, &WINDOW, local, &key.public_key()).unwrap();
    let preimage = [
        &b"gatewayd-poc-beacon-v1"[..],
        &entropy,
        &WINDOW.len_s.to_be_bytes(),
        &WINDOW.id.to_be_bytes(),
        local,
        &key.public_key().0,
    ]
    .concat();
    assert_eq!(sha256(&preimage), p.body, "§5.1 body");
    assert_eq!(p.frame, [&[0xe0, 0x01][..], &p.body].concat(), "§5.2 frame");
    let channels = [868_100_000, 868_300_000, 868_500_000];
    let pick = u32::from_be_bytes(p.body[..4].try_into().unwrap()) as usize % channels.len();
    assert_eq!(p.freq_hz, channels[pick], "§5.3 frequency");
    assert_eq!((p.dr, p.airtime.as_micros()), (3, 246_784), "§5.3 SF9 DR3");
    (p, preimage)
}

/// A's or C's beacon report: 14 dBm conducted, `gain` dBi×10, `loss` dB×10.
fn beacon_body(
    p: &BeaconPlan,
    local: [u8; 32],
    tx_ms: u64,
    (gain, loss): (i16, u16),
    at: WirePosition,
) -> BeaconReport {
    BeaconReport {
        window: WINDOW,
        network_entropy: counting(0x00),
        local_entropy: local,
        region: eu868(),
        sub_band: None,
        tx_time_ms: tx_ms,
        time_source: TimeSource::Gps,
        freq_hz: p.freq_hz as u32,
        dr: p.dr,
        power_dbm: 14,
        antenna_gain_ddbi: gain,
        cable_loss_ddb: loss,
        location: Some(at),
    }
}

/// The uplinks A forwarded (uplink id 3's outbox store failed, so it is not chained and the
/// network never got it).
fn uplinks() -> Vec<(u32, Vec<u8>)> {
    [
        (1, "407856341200010001a1b2c3d4e5f607"),
        (2, "40785634120002000148656c6c6f0badc0de"),
        (4, "807856341200030002deadbeef01020304"),
        (5, "40785634120004000111223344556677"),
    ]
    .into_iter()
    .map(|(id, h)| (id, unhex(h)))
    .collect()
}

pub fn build() -> Vectors {
    let keys: Vec<SeedKey> = RFC8032.iter().map(|(s, _)| SeedKey::new(s)).collect();
    for (k, (_, public)) in keys.iter().zip(RFC8032) {
        assert_eq!(k.public_key().address(), public, "RFC 8032 public key");
    }
    let [a, b, c] = [&keys[0], &keys[1], &keys[2]];
    let addr = |k: &SeedKey| k.public_key().address();
    let t0 = WINDOW.start_ms();
    assert_eq!(t0, T0_S * 1000);
    let mut doc = String::new();

    // 10.1 Keys.
    let a_pk8 = pkcs8_v2(&unhex(RFC8032[0].0), &a.public_key().0);
    let parsed = Ed25519KeyPair::from_pkcs8(&a_pk8).expect("ring reads the PKCS#8 vector");
    assert_eq!(parsed.public_key().as_ref(), a.public_key().0);
    doc += "### 10.1 Keys\n\nThe secret keys (seeds) of RFC 8032 §7.1 TEST 1, 2 and 3:\n\n\
            | hotspot | seed | public key = address |\n|---|---|---|\n";
    for (name, (seed, public)) in ["A (beaconer)", "B (witness)", "C"].iter().zip(RFC8032) {
        doc += &format!("| {name} | `{seed}` | `{public}` |\n");
    }
    doc += &format!(
        "\nA's key file (`identity.pk8`, PKCS#8 v2 DER as `ring` writes it, {} bytes: prefix, \
         seed, `812100`, public key):\n\n```\n{}\n```\n\n",
        a_pk8.len(),
        hex(&a_pk8)
    );

    // 10.2 Window and entropy.
    let entropy = counting(0x00);
    let command = EntropyCommand {
        window: WINDOW,
        entropy,
    }
    .encode();
    doc += &format!(
        "### 10.2 Window and entropy\n\nWindow L = {} s, W = {} (2026-01-01T00:00:00Z): \
         `[{}, {})` ms. Network entropy `{}`. The `command/poc_entropy` payload (§3, {} \
         bytes):\n\n```\n{}\n```\n\n",
        WINDOW.len_s,
        WINDOW.id,
        WINDOW.start_ms(),
        WINDOW.end_ms(),
        hex(&entropy),
        command.len(),
        hex(&command)
    );

    // 10.3 A's beacon.
    let local = counting(0x20);
    let (pa, preimage) = beacon_plan(a, &local);
    let pick = u32::from_be_bytes(pa.body[..4].try_into().unwrap());
    doc += &format!(
        "### 10.3 Beacon (§5)\n\nA's local entropy `{}`. The SHA-256 input of the body \
         ({} bytes: domain, network entropy, L, W, local entropy, A's key):\n\n```\n{}\n```\n\n\
         body = `{}`; u32_be(body[0..4]) = {pick}, mod 3 = {} → {} Hz (EU868 default channel \
         {}); DR{} = SF9/125 kHz, airtime {} µs. The frame on air (34 bytes):\n\n```\n{}\n```\n\n",
        hex(&local),
        preimage.len(),
        hex(&preimage),
        hex(&pa.body),
        pick % 3,
        pa.freq_hz,
        pick % 3,
        pa.dr,
        pa.airtime.as_micros(),
        hex(&pa.frame)
    );

    // 10.4 A's beacon report.
    let a_at = WirePosition::from_degrees(PositionSource::Gps, 52.370_215_7, 4.895_167_9, 2.0);
    let tx = t0 + 1_234_567;
    let ba = beacon_body(&pa, local, tx, (21, 5), a_at);
    let beacon_r = sign(a, tx + 1000, tx + HOUR_MS, Body::Beacon(ba.clone()));
    doc += &format!(
        "### 10.4 Beacon report (§6.1, §6.2)\n\n14 dBm + 2.1 dBi − 0.5 dB = 15.6 dBm EIRP \
         (limit 16.15); deadline = tx + 1 h (the policy's bound, inclusive). {} bytes:\n\n{}\n\
         ```\n{}\n```\n\n",
        beacon_r.bytes().len(),
        layout(beacon_r.bytes(), &beacon_fields(&beacon_r, &ba)),
        beacon_r.to_hex()
    );

    // 10.5 B's witness.
    let rx = tx + 247;
    let wb = WitnessReport {
        frame: pa.frame.clone(),
        region: eu868(),
        freq_hz: pa.freq_hz as u32 + 1_200,
        sf: 9,
        bw_hz: 125_000,
        rssi_ddbm: -1085,
        snr_ddb: -73,
        rx_time_ms: rx,
        time_source: TimeSource::Gps,
        antenna_gain_ddbi: 30,
        location: Some(WirePosition::from_degrees(
            PositionSource::Config,
            52.4,
            4.9,
            5.0,
        )),
    };
    let witness_r = sign(b, rx + 800, rx + HOUR_MS, Body::Witness(wb.clone()));
    let d = a_at.distance_m(wb.location.as_ref().unwrap());
    doc += &format!(
        "### 10.5 Witness report (§6.3)\n\nB heard A's beacon 247 ms after tx by GPS time, \
         {d:.1} m away (§7.4), at −108.5 dBm (bound {} dBm). {} bytes:\n\n{}\n```\n{}\n```\n\n",
        format!(
            "{:.2}",
            15.6 + 3.0 - gatewayd::poc::verify::fspl_db(d, pa.freq_hz as f64) + 6.0
        )
        .replace('-', "−"),
        witness_r.bytes().len(),
        layout(witness_r.bytes(), &witness_fields(&witness_r, &wb)),
        witness_r.to_hex()
    );

    // 10.6 A's receipt chain.
    let g = genesis(&a.public_key());
    assert_eq!(
        g.to_vec(),
        sha256(&[&b"gatewayd-poc-receipt-v1"[..], &a.public_key().0].concat())
    );
    doc += &format!(
        "### 10.6 Receipt chain (§6.4)\n\nA's genesis = SHA-256(\"gatewayd-poc-receipt-v1\" ‖ \
         A's key) = `{}`. A forwarded the uplinks below (id 3's store failed: not chained, \
         never published). Each step h_i = SHA-256(h_(i−1) ‖ id (u32) ‖ len (u16) ‖ \
         SHA-256(PHYPayload)):\n\n| uplink id | PHYPayload | SHA-256(PHYPayload) | head after |\n\
         |---|---|---|---|\n",
        hex(&g)
    );
    let ups = uplinks();
    let mut chain = ReceiptChain::from_head(g);
    let mut head = g.to_vec();
    let mut receipts = Vec::new();
    let periods = [(600, vec![0, 1, 2]), (1200, vec![]), (1800, vec![3])];
    for (start_s, which) in &periods {
        for &i in which {
            let (id, phy) = &ups[i];
            chain.push(*id, phy);
            let step = [
                &head[..],
                &id.to_be_bytes(),
                &(phy.len() as u16).to_be_bytes(),
                &sha256(phy),
            ]
            .concat();
            head = sha256(&step);
            assert_eq!(head, chain.head(), "§6.4 chain step");
            doc += &format!(
                "| {id} | `{}` | `{}` | `{}` |\n",
                hex(phy),
                hex(&sha256(phy)),
                hex(&head)
            );
        }
        let (start, end) = (t0 + start_s * 1000, t0 + (start_s + 600) * 1000);
        let t = chain.close(start, end);
        receipts.push((
            t.clone(),
            sign(a, end + 50, end + HOUR_MS, Body::Receipt(t)),
        ));
    }
    doc += "\nThree receipts of 10-minute periods: R1 with uplinks 1, 2 and 4, R2 empty \
            (count, bytes and ids 0, head = prev_head), R3 with uplink 5. R1 in full:\n\n";
    let (t1, r1) = &receipts[0];
    doc += &layout(r1.bytes(), &receipt_fields(r1, t1));
    for (name, (t, r)) in ["R1", "R2", "R3"].iter().zip(&receipts) {
        doc += &format!(
            "\n{name}: period [{}, {}], count {}, bytes {}, ids {}..={}, prev_head `{}`, head \
             `{}`:\n\n```\n{}\n```\n",
            t.period_start_ms,
            t.period_end_ms,
            t.count,
            t.bytes,
            t.first_uplink_id,
            t.last_uplink_id,
            hex(&t.prev_head),
            hex(&t.head),
            r.to_hex()
        );
    }

    // 10.7 Onboarding statements.
    let onboard = |k: &SeedKey, owner: &str| {
        let created = t0 + 60_000;
        sign(
            k,
            created,
            created + HOUR_MS,
            Body::Onboarding(Onboarding {
                owner: owner.into(),
            }),
        )
    };
    let (oa, ob) = (onboard(a, "owner-alice"), onboard(b, "owner-bob"));
    doc += &format!(
        "\n### 10.7 Onboarding statements (§6.5)\n\nA → `owner-alice`, B → `owner-bob`, made \
         at {}:\n\n```\n{}\n{}\n```\n\n",
        t0 + 60_000,
        oa.to_hex(),
        ob.to_hex()
    );

    // 10.8 Tampered reports, each failing one rule.
    let mut flipped = witness_r.bytes().to_vec();
    *flipped.last_mut().unwrap() ^= 0x01;
    let c_at = WirePosition::from_degrees(PositionSource::Config, 52.35, 4.85, 3.0);
    let late = WitnessReport {
        freq_hz: pa.freq_hz as u32 - 3_000,
        rssi_ddbm: -1120,
        snr_ddb: -90,
        rx_time_ms: WINDOW.end_ms(),
        time_source: TimeSource::Local,
        antenna_gain_ddbi: 20,
        location: Some(c_at),
        ..wb.clone()
    };
    let late_r = sign(
        c,
        WINDOW.end_ms() + 500,
        WINDOW.end_ms() + HOUR_MS,
        Body::Witness(late),
    );
    let c_local = counting(0x40);
    let (pc, _) = beacon_plan(c, &c_local);
    let loud = beacon_body(&pc, c_local, t0 + 2_000_000, (22, 0), c_at);
    let loud_r = sign(
        c,
        t0 + 2_001_000,
        t0 + 2_000_000 + HOUR_MS,
        Body::Beacon(loud),
    );
    let (t2, r2) = &receipts[1];
    let inconsistent = TransferReceipt {
        bytes: 1,
        ..t2.clone()
    };
    let inconsistent_r = sign(
        a,
        r2.report.created_ms,
        r2.report.deadline_ms,
        Body::Receipt(inconsistent),
    );

    let row = |what: &str, r: &SignedReport, verdict: &'static str| Expected {
        what: what.into(),
        hex: r.to_hex(),
        verdict,
    };
    let expected = vec![
        row("A's onboarding statement (10.7)", &oa, "Onboarding"),
        row("B's onboarding statement (10.7)", &ob, "Onboarding"),
        row("A's beacon report (10.4)", &beacon_r, "Beacon"),
        row("B's witness report (10.5)", &witness_r, "Witness"),
        row("A's receipt R1 (10.6)", r1, "Receipt"),
        row("A's receipt R2, empty (10.6)", r2, "Receipt"),
        row("A's receipt R3 (10.6)", &receipts[2].1, "Receipt"),
        Expected {
            what: "B's witness report with the last bit of its signature flipped".into(),
            hex: hex(&flipped),
            verdict: "BadSignature",
        },
        row(
            "B's witness report again, the same bytes",
            &witness_r,
            "Replayed",
        ),
        row(
            "C's witness of A's beacon by local clock at the window's end, 1 ms past it",
            &late_r,
            "TimeMismatch",
        ),
        row(
            "C's beacon claiming 14 dBm + 2.2 dBi − 0 dB = 16.20 dBm (limit 16.15)",
            &loud_r,
            "PowerAboveLimit",
        ),
        row(
            "A's receipt R2 re-signed claiming 1 byte without uplinks",
            &inconsistent_r,
            "ReceiptInconsistent",
        ),
    ];

    // The files and the expected verdicts.
    let mut reports_txt = String::from(
        "# gatewayd PoC test vectors (docs/proof-of-coverage.md §10), one report per line in \
         hex.\n# Generated by gatewayd/tests/poc_doc.rs; expected verdicts in verdicts.txt.\n",
    );
    let mut verdicts_txt = String::from("# LINE VERDICT of reports.txt\n");
    let mut table = String::from("| line | report | verdict |\n|---|---|---|\n");
    for e in &expected {
        reports_txt += &format!("# {}\n", e.what);
        let line = reports_txt.lines().count() + 1;
        reports_txt += &format!("{}\n", e.hex);
        verdicts_txt += &format!("{line} {}\n", e.verdict);
        table += &format!("| {line} | {} | `{}` |\n", e.what, e.verdict);
    }
    let mut uplinks_txt = String::from("# [ADDRESS] UPLINK_ID PHY: what the network received\n");
    for (id, phy) in &ups {
        uplinks_txt += &format!("{} {id} {}\n", addr(a), hex(phy));
    }
    let entropy_arg = format!("{}:{}:{}", WINDOW.len_s, WINDOW.id, hex(&entropy));
    doc += &format!(
        "### 10.8 Verifying them\n\n`docs/poc-vectors/` holds the reports above and some \
         tampered ones (`reports.txt`), the uplinks the network received from A \
         (`uplinks.txt`) and the verdict each report must get (`verdicts.txt`). In that \
         directory\n\n```\ngatewayd poc verify --at-ms {AT_MS} --entropy {entropy_arg} \
         --uplinks uplinks.txt reports.txt\n```\n\nverifies them as received at the window's \
         end, printing `reports.txt:LINE: valid …` or `reports.txt:LINE: INVALID: NAME: …` \
         per report (exit 1: some are invalid on purpose):\n\n{table}"
    );
    Vectors {
        doc,
        reports_txt,
        uplinks_txt,
        verdicts_txt,
        expected,
        key_a: (a_pk8, addr(a)),
    }
}
