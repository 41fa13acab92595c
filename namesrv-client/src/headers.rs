//! Custom headers of the NameServer request family. The definitions live in
//! [`remoting::headers::namesrv`] (one copy for broker, client and NameServer); this module
//! re-exports them under the path existing callers use.

pub use remoting::headers::namesrv::*;
