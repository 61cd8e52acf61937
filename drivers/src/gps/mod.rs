//! GPS over a serial port (NMEA 0183): location and time for uplink metadata, stats and
//! proof of coverage.
//!
//! - [`nmea`]: pure codec, one line → [`nmea::Sentence`] (GGA, RMC) or a precise error.
//! - [`state`]: pure state machine (NoDevice / NoFix / Fix / Stale) and counters.
//! - [`reader`]: the task owning the serial device; publishes [`GpsState`] on a `watch`
//!   channel and reopens the device with backoff when it goes away.
//!
//! ```no_run
//! # async fn demo() {
//! use drivers::gps::{spawn, GpsConfig};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let gps = spawn(GpsConfig::default(), shutdown.clone());
//! let state = gps.state.borrow().clone();
//! if let (Some(pos), Some(time)) = (state.position, state.time) {
//!     let utc_now = time.at(std::time::Instant::now());
//!     println!("{} {} at {:?}", pos.latitude, pos.longitude, utc_now);
//! }
//! # }
//! ```

pub mod line;
pub mod nmea;
pub mod reader;
pub mod state;

pub use reader::{spawn, GpsConfig, GpsHandle, OpenError};
pub use state::{
    Counters, CountersSnapshot, GpsFix, GpsState, GpsTime, GpsTracker, ReceiverStatus,
};

#[cfg(test)]
mod pty_tests;
