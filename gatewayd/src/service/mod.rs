//! Service glue for running as a Linux system service: systemd notification and the
//! watchdog health gate, dropping root privileges, the `gatewayd status` socket and the
//! Prometheus `/metrics` endpoint. Operators' view: `docs/operations.md`.

pub mod metrics;
pub mod notify;
pub mod privileges;
pub mod status;
mod status_render;
pub mod storage;
pub mod watchdog;

pub use notify::Notifier;
pub use status::StatusSnapshot;
pub use watchdog::{spawn_watchdog, Heartbeat, Watchdog};
