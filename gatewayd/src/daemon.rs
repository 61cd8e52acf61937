//! TODO(daemon)
