//! A real Mosquitto broker on 127.0.0.1 with a free port, in its own temp dir, stopped on
//! Drop: used by the end-to-end tests and by the demo.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The broker binary: `$MOSQUITTO`, else `mosquitto` on `PATH`, else `/usr/sbin/mosquitto`
/// (Debian installs it there, outside a normal user's `PATH`).
pub fn mosquitto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MOSQUITTO") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("mosquitto"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"))
}
/// Longest wait for the broker to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the broker to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a broker did not start; names the file, binary or port at fault.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Its temp dir could not be created.
    #[error("temp dir for mosquitto: {0}")]
    TempDir(#[source] std::io::Error),
    /// Its config could not be written.
    #[error("write conf {}: {source}", path.display())]
    WriteConf {
        /// The config file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its log could not be opened.
    #[error("open log {}: {source}", path.display())]
    OpenLog {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The binary could not be run.
    #[error("spawn {}: {source}", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exited while starting.
    #[error("mosquitto exited ({status}) on port {port}: {log}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its port.
        port: u16,
        /// Its log.
        log: String,
    },
    /// It did not accept connections in time (and was killed).
    #[error("mosquitto did not accept on port {port} within {START_TIMEOUT:?}: {log}")]
    NotAccepting {
        /// Its port.
        port: u16,
        /// Its log.
        log: String,
    },
    /// Every attempt failed; the last one's reason.
    #[error("mosquitto did not start: {0} (install it: scripts/setup)")]
    NotStarted(#[source] Box<BrokerError>),
}

/// A Mosquitto process listening on 127.0.0.1:`port()`.
pub struct Mosquitto {
    dir: tempfile::TempDir,
    port: u16,
    persistent: bool,
    extra: String,
    child: Option<Child>,
}

impl Mosquitto {
    /// The broker's temp dir (config, log, and files a test puts there, such as certificates).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Start a broker without persistence on a free port (panics with the reason if it
    /// cannot: for tests).
    pub fn start() -> Mosquitto {
        Mosquitto::try_start(false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start a broker whose sessions and queued messages survive [`Mosquitto::restart`]
    /// (persistence in its temp dir, saved on a graceful stop).
    pub fn start_persistent() -> Mosquitto {
        Mosquitto::try_start(true).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start a broker, or say why it could not start.
    pub fn try_start(persistent: bool) -> Result<Mosquitto, BrokerError> {
        Mosquitto::try_start_with(persistent, "")
    }

    /// Start a broker whose config ends with `extra` (e.g. a second, TLS listener; the
    /// plain listener on [`Mosquitto::port`] stays first).
    pub fn try_start_with(persistent: bool, extra: &str) -> Result<Mosquitto, BrokerError> {
        // Another process may take the free port between probe and bind: try a few.
        let mut attempt = 1;
        loop {
            let mut m = Mosquitto {
                dir: tempfile::tempdir().map_err(BrokerError::TempDir)?,
                port: free_port(),
                persistent,
                extra: extra.to_string(),
                child: None,
            };
            match m.spawn() {
                Ok(()) => return Ok(m),
                Err(e) if attempt == 5 => return Err(BrokerError::NotStarted(Box::new(e))),
                Err(_) => attempt += 1,
            }
        }
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    fn spawn(&mut self) -> Result<(), BrokerError> {
        let mut conf = format!(
            "listener {} 127.0.0.1\nset_tcp_nodelay true\nallow_anonymous true\nuser root\nlog_dest stderr\n\
             log_type error\nlog_type warning\nlog_type notice\nmax_queued_messages 100000\n",
            self.port
        );
        if self.persistent {
            conf.push_str(&format!(
                "persistence true\npersistence_location {}/\nautosave_interval 0\n",
                self.dir.path().display()
            ));
        } else {
            conf.push_str("persistence false\n");
        }
        conf.push_str(&self.extra);
        std::fs::write(self.conf_path(), conf).map_err(|source| BrokerError::WriteConf {
            path: self.conf_path(),
            source,
        })?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|source| BrokerError::OpenLog {
                path: self.log_path(),
                source,
            })?;
        let bin = mosquitto_binary();
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(self.conf_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| BrokerError::Spawn {
                binary: bin.clone(),
                source,
            })?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(BrokerError::Exited {
                    status,
                    port: self.port,
                    log: self.log(),
                });
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(BrokerError::NotAccepting {
                    port: self.port,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the broker logged (errors, warnings, notices).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Stop the broker gracefully (SIGTERM; SIGKILL after a bounded wait). Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL, as a crash would: no goodbye to clients, nothing saved. Idempotent.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop and start again on the same port (the port is re-bound with SO_REUSEADDR).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Start again on the same port after [`Mosquitto::stop`] or [`Mosquitto::kill9`]
    /// (panics if it cannot within the start timeout: for tests).
    pub fn start_again(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("mosquitto restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
