//! Message ids as the Java client sets them (`UNIQ_KEY`, apache/rocketmq
//! `common/.../message/MessageClientIDSetter.java`): every message a `DefaultMQProducer`
//! sends carries one (`DefaultMQProducerImpl.sendKernelImpl`), and the broker indexes it.
//! The benchmark sends them too, so it offers the broker a Java producer's load.
//!
//! 32 upper-case hex digits: a per-process prefix (IPv4 address, pid, a per-run value in
//! place of Java's class-loader hash), then milliseconds since the run started and a
//! wrapping 16-bit counter.

use std::fmt::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Hex digits in an id.
pub const UNIQ_ID_LEN: usize = 32;

pub struct UniqIds {
    prefix: String,
    start: Instant,
    counter: AtomicU32,
}

impl UniqIds {
    pub fn new() -> Self {
        let run = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let pid = std::process::id() as u16;
        UniqIds {
            prefix: format!("7F000001{pid:04X}{run:08X}"),
            start: Instant::now(),
            counter: AtomicU32::new(0),
        }
    }

    /// Appends the next id to `out`.
    pub fn push_next(&self, out: &mut String) {
        let ms = self.start.elapsed().as_millis() as u32;
        let n = self.counter.fetch_add(1, Ordering::Relaxed) as u16;
        out.push_str(&self.prefix);
        // Writing to a String cannot fail.
        let _ = write!(out, "{ms:08X}{n:04X}");
    }

    /// A message's properties: its id, then `WAIT=true` (answer only once the message is
    /// flushed/replicated as configured, the Java default). 4.9.7 form: no trailing
    /// separator.
    pub fn properties(&self) -> String {
        let mut p = String::with_capacity(PROPERTIES_LEN);
        p.push_str("UNIQ_KEY\u{1}");
        self.push_next(&mut p);
        p.push_str("\u{2}WAIT\u{1}true");
        p
    }
}

impl Default for UniqIds {
    fn default() -> Self {
        UniqIds::new()
    }
}

/// Length of [`UniqIds::properties`].
pub const PROPERTIES_LEN: usize = "UNIQ_KEY\u{1}".len() + UNIQ_ID_LEN + "\u{2}WAIT\u{1}true".len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_hex_digits_and_distinct() {
        let ids = UniqIds::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let p = ids.properties();
            assert_eq!(p.len(), PROPERTIES_LEN);
            let at = "UNIQ_KEY\u{1}".len();
            let id = &p[at..at + UNIQ_ID_LEN];
            assert!(id
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
            assert!(p.ends_with("\u{2}WAIT\u{1}true"));
            assert!(seen.insert(p));
        }
    }
}
