//! The machine's UDP error counters (`/proc/net/snmp`): datagrams the kernel dropped because a
//! socket's receive buffer was full (`RcvbufErrors`, part of `InErrors`) or its send buffer
//! (`SndbufErrors`). Machine-wide, so other processes' UDP counts too; a difference over a
//! measurement says whether datagrams were lost in the kernel. And the drops of one socket, the
//! server's (`/proc/net/udp`, its last column): exactly the datagrams sent to the server that it
//! never saw.

use std::net::SocketAddr;

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

/// Datagrams the kernel dropped at the UDP socket bound to `addr`'s port (its receive buffer
/// full), from `/proc/net/udp` or `/proc/net/udp6`; `None` when no such socket is listed.
pub fn socket_drops(addr: SocketAddr) -> Option<u64> {
    let file = if addr.is_ipv4() { "/proc/net/udp" } else { "/proc/net/udp6" };
    parse_socket_drops(&std::fs::read_to_string(file).ok()?, addr.port())
}

fn parse_socket_drops(text: &str, port: u16) -> Option<u64> {
    let wanted = format!(":{port:04X}");
    let mut found = None;
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1).is_some_and(|local| local.ends_with(&wanted)) {
            let drops: u64 = fields.last()?.parse().ok()?;
            found = Some(found.unwrap_or(0) + drops);
        }
    }
    found
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

    #[test]
    fn reads_a_sockets_drops() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            \x20 1: 0100007F:9C40 00000000:0000 07 00000000 00000000 00:00000000 00000000     0        0 1 2 0000000000000000 17\n\
            \x20 2: 0100007F:1633 0100007F:9C40 01 00000000 00000000 00:00000000 00000000     0        0 3 2 0000000000000000 5\n";
        assert_eq!(parse_socket_drops(text, 0x9C40), Some(17));
        assert_eq!(parse_socket_drops(text, 0x1633), Some(5));
        assert_eq!(parse_socket_drops(text, 1), None);
    }
}
