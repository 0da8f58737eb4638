//! The machine's UDP error counters (`/proc/net/snmp`): datagrams the kernel dropped because a
//! socket's receive buffer was full (`RcvbufErrors`, part of `InErrors`) or its send buffer
//! (`SndbufErrors`). Machine-wide, so other processes' UDP counts too (there is little UDP on
//! this machine besides the bench's); a difference over a measurement says whether datagrams
//! of it were lost in the kernel.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UdpCounters {
    pub in_errors: u64,
    pub rcvbuf_errors: u64,
    pub sndbuf_errors: u64,
}

impl UdpCounters {
    /// The counters now (zeros when `/proc/net/snmp` cannot be read).
    pub fn now() -> Self {
        std::fs::read_to_string("/proc/net/snmp").ok().as_deref().and_then(parse).unwrap_or_default()
    }

    /// `self − start`.
    pub fn since(&self, start: &UdpCounters) -> UdpCounters {
        UdpCounters {
            in_errors: self.in_errors.saturating_sub(start.in_errors),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(start.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(start.sndbuf_errors),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "UDP drops    receive buffer full {}  send buffer full {}  (all input errors {}; machine-wide, /proc/net/snmp)",
            self.rcvbuf_errors, self.sndbuf_errors, self.in_errors
        )
    }
}

/// The `Udp:` header and value lines of `/proc/net/snmp`.
fn parse(text: &str) -> Option<UdpCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let values: Vec<u64> = lines.next()?.split_whitespace().skip(1).map(|v| v.parse().ok()).collect::<Option<_>>()?;
    let get = |name: &str| names.iter().position(|n| *n == name).and_then(|i| values.get(i).copied());
    Some(UdpCounters {
        in_errors: get("InErrors")?,
        rcvbuf_errors: get("RcvbufErrors")?,
        sndbuf_errors: get("SndbufErrors")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_udp_lines() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\n\
            Udp: 2047789 4138 420 2052406 419 3 0\n\
            UdpLite: InDatagrams NoPorts InErrors\nUdpLite: 0 0 0\n";
        let c = parse(text).expect("parsed");
        assert_eq!(c, UdpCounters { in_errors: 420, rcvbuf_errors: 419, sndbuf_errors: 3 });
        assert_eq!(c.since(&UdpCounters { in_errors: 400, rcvbuf_errors: 419, sndbuf_errors: 0 }).in_errors, 20);
        assert!(parse("Tcp: a\nTcp: 1\n").is_none());
    }
}
