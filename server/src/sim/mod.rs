//! The deterministic simulator (see `docs/consensus.md`).
