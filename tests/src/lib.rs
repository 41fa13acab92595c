//! Test helpers for multi-process tests
