//! NameServer protocol bodies. The definitions live in [`remoting::body::namesrv`] (one copy
//! for broker, client, NameServer, benchmark and tests); this module re-exports them under the
//! path existing callers use.

pub use remoting::body::namesrv::*;
