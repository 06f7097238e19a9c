//! gort-tests: shared helpers for the integration tests and benchmark programs.
