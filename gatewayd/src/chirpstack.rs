//! TODO(chirpstack)
