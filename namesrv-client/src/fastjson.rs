//! fastjson-compatible JSON output and input. The helpers live in
//! [`remoting::body::fastjson`]; this module re-exports the ones NameServer bodies use.

pub use remoting::body::fastjson::{normalize, write_number_key, write_str, JsonStyle};
