//! TODO(pipeline)
