//! Message store (placeholder; the store work fills this in).
