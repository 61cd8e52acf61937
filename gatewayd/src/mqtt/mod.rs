//! TODO(mqtt)
