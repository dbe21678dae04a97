//! Cross-crate tests of aimbus live under `tests/`.
