//! Benchmarks of aimbus live under `benches/`.
