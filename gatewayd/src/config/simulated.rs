//! `radio.kind = "simulated"`: the simulated radio's settings when this gatewayd was built with
//! the `simulated` cargo feature (demos and tests), else the error saying how to get it (the
//! `.deb`'s daemon is built without it and carries no test doubles).

use drivers::radio::Eui64;

use super::{raw, Builder, ConfigError, RadioConfig};

/// Whether this gatewayd has the simulated radio backend (the `simulated` cargo feature).
pub const BUILT_IN: bool = cfg!(feature = "simulated");

/// The radio config for `radio.kind = "simulated"`, or why there is none.
pub(super) fn radio(
    b: &Builder<'_>,
    radio: &raw::RawRadio,
    id: Option<Eui64>,
) -> Result<RadioConfig, ConfigError> {
    if !BUILT_IN {
        return Err(not_built_in(b));
    }
    settings(b, radio, id)
}

/// The refusal of a gatewayd built without the simulated radio: names the key and the file
/// (its line is filled in by [`super::Config::from_toml`]) and says how to get one.
pub(super) fn not_built_in(b: &Builder<'_>) -> ConfigError {
    b.invalid(
        "radio.kind",
        "\"simulated\": this gatewayd was built without the simulated radio; it is for demos \
         and tests: build with `cargo build -p gatewayd --features simulated`, as scripts/demo \
         and scripts/test do",
    )
}

#[cfg(feature = "simulated")]
fn settings(
    b: &Builder<'_>,
    radio: &raw::RawRadio,
    id: Option<Eui64>,
) -> Result<RadioConfig, ConfigError> {
    let Some(sim) = &radio.simulated else {
        return Err(b.invalid(
            "radio.simulated",
            "radio.kind = \"simulated\" needs a [radio.simulated] table with the hub address",
        ));
    };
    if id.is_none() {
        return Err(b.invalid(
            "gateway.id",
            "required with radio.kind = \"simulated\" (only a packet forwarder announces one)",
        ));
    }
    let cfg = sim.to_config(id).map_err(|e| match e {
        sim::SimError::Config { key, message } => {
            b.invalid(&format!("radio.simulated.{key}"), message)
        }
        other => b.invalid("radio.simulated", other.to_string()),
    })?;
    Ok(RadioConfig::Simulated(Box::new(cfg)))
}

#[cfg(not(feature = "simulated"))]
fn settings(
    b: &Builder<'_>,
    _radio: &raw::RawRadio,
    _id: Option<Eui64>,
) -> Result<RadioConfig, ConfigError> {
    Err(not_built_in(b))
}
