//! Emulated radio chips.
