//! TODO(lorawan)
