//! Developer tools for gatewayd (load generator, demo).
