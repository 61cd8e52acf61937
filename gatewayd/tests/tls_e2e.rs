//! MQTT over TLS against a real Mosquitto with a TLS listener that requires client
//! certificates: certificates made with the `openssl` tool for the test (a CA, a server
//! certificate for 127.0.0.1, a client certificate). A wrong CA is refused and nothing is lost.

use testkit as support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::daemon::*;

const WAIT: Duration = Duration::from_secs(20);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/setup)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for IP 127.0.0.1 and a client certificate, in `dir`.
fn make_pki(dir: &Path, ca: &str) {
    let ca_key = format!("{ca}.key");
    let ca_pem = format!("{ca}.pem");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca_pem,
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
        ],
    );
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{ca}-{name}.key"),
                "-out",
                &format!("{ca}-{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(dir.join(format!("{ca}-{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{ca}-{name}.csr"),
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &format!("{ca}-{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{ca}-{name}.ext"),
            ],
        );
    }
}

fn tls_broker() -> (Mosquitto, u16, tempfile::TempDir) {
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path(), "ca");
    make_pki(pki.path(), "other");
    let tls_port = free_port();
    let p = |f: &str| pki.path().join(f).display().to_string();
    let extra = format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        p("ca.pem"),
        p("ca-server.pem"),
        p("ca-server.key")
    );
    let broker = Mosquitto::try_start_with(false, &extra).unwrap();
    (broker, tls_port, pki)
}

fn tls_config(pki: &Path, tls_port: u16, ca: &str) -> String {
    let p = |f: &str| pki.join(f).display().to_string();
    format!(
        "server = \"ssl://127.0.0.1:{tls_port}\"\nca_cert = {:?}\ntls_cert = {:?}\ntls_key = {:?}\n",
        p(&format!("{ca}.pem")),
        p("ca-client.pem"),
        p("ca-client.key")
    )
}

#[test]
fn uplinks_over_tls_with_a_client_certificate() {
    let (broker, tls_port, pki) = tls_broker();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start_mqtt(broker.port(), &tls_config(pki.path(), tls_port, "ca"));
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(pf.push_frames(0..20, 8, WAIT), 20);
    sub.wait_uplinks(WAIT, |u| u.len() >= 20);
    assert_eq!(sub.frame_counts().len(), 20, "{}", daemon.log());
}

#[test]
fn a_broker_certificate_from_another_ca_is_refused_and_nothing_is_lost() {
    let (broker, tls_port, pki) = tls_broker();
    let sub = Subscriber::start(broker.port(), "eu868/gateway/+/event/up");
    let daemon = Daemon::start_mqtt(broker.port(), &tls_config(pki.path(), tls_port, "other"));
    let mut pf = Forwarder::new(daemon.udp_port);
    assert_eq!(
        pf.push_frames(0..10, 8, WAIT),
        10,
        "stored and acknowledged even without a broker"
    );
    let deadline = std::time::Instant::now() + WAIT;
    while !daemon.log().to_lowercase().contains("certificate")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        daemon.log().to_lowercase().contains("certificate"),
        "the TLS failure is logged:\n{}",
        daemon.log()
    );
    assert!(
        sub.uplinks().is_empty(),
        "nothing may be published through an unverified broker"
    );
}
