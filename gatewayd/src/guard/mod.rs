//! The regulatory guard (in progress).
