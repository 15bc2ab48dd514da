//! Model-based tests (filled in below).
