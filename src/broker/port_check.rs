//! Whether another socket already listens on a port the broker is about to take.
//!
//! Listeners are reserved with SO_REUSEPORT so every shard can accept on the same
//! port, and the kernel lets any process of the same user join such a port: a second
//! broker started on a taken port would come up and silently receive a share of the
//! first one's connections. A probe bind without SO_REUSEPORT cannot tell the two
//! cases apart either, because connections a killed broker accepted linger (FIN-WAIT,
//! TIME-WAIT) on the port and refuse it to anyone without SO_REUSEPORT. What marks a
//! port as taken is a socket in the LISTEN state, which the kernel's socket table
//! (`/proc/net/tcp`, `/proc/net/tcp6`, of this network namespace) shows; before the
//! shards listen, none of those is ours.

//!
//! A broker killed a moment ago leaves its listeners open for a little while (tens
//! of milliseconds measured): they belong to its io_uring, whose teardown the kernel
//! defers past the process's exit. A restart waits for such a listener to go away,
//! for at most `LINGERING_LISTENER_WAIT`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The kernel's code for TCP_LISTEN in `/proc/net/tcp`'s `st` column.
const TCP_LISTEN: &str = "0A";

/// How long a start waits for a listener on its port to close before it gives up.
pub const LINGERING_LISTENER_WAIT: Duration = Duration::from_secs(3);

/// How often the socket table is read while waiting.
const POLL: Duration = Duration::from_millis(20);

/// Whether a listener still holds `addr` after waiting up to `limit` for it to
/// close.
pub fn still_taken_after(addr: SocketAddr, limit: Duration) -> std::io::Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        if !someone_listens(addr)? {
            return Ok(false);
        }
        if Instant::now() >= deadline {
            return Ok(true);
        }
        std::thread::sleep(POLL);
    }
}

/// Whether a socket of this network namespace listens where `addr` would.
pub fn someone_listens(addr: SocketAddr) -> std::io::Result<bool> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(table) {
            Ok(text) if listens_in(&text, addr) => return Ok(true),
            Ok(_) => {}
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Whether the socket table `text` (the format of `/proc/net/tcp` or `tcp6`) holds a
/// listener that conflicts with binding `addr`: the same port, and the same address
/// or a wildcard on either side. Lines that do not parse are skipped.
pub fn listens_in(text: &str, addr: SocketAddr) -> bool {
    text.lines().skip(1).filter_map(listener).any(|(ip, port)| {
        port == addr.port()
            && (ip == addr.ip() || ip.is_unspecified() || addr.ip().is_unspecified())
    })
}

/// The local address of a LISTEN line of a socket table.
fn listener(line: &str) -> Option<(IpAddr, u16)> {
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let state = fields.nth(1)?;
    if state != TCP_LISTEN {
        return None;
    }
    let (ip, port) = local.split_once(':')?;
    Some((parse_ip(ip)?, u16::from_str_radix(port, 16).ok()?))
}

/// The kernel prints an address as 32-bit words in host byte order, each `%08X`.
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(bytes);
            // A v4-mapped listener (::ffff:a.b.c.d) holds the IPv4 address.
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue\n";

    fn table(lines: &[&str]) -> String {
        let mut t = HEADER.to_string();
        for l in lines {
            t.push_str(l);
            t.push('\n');
        }
        t
    }

    fn v4_hex(ip: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_listener_on_the_same_address_and_port_conflicts() {
        let line = format!("   0: {}:1F90 00000000:0000 0A 0:0", v4_hex([127, 0, 0, 1]));
        let t = table(&[&line]);
        assert!(listens_in(&t, addr("127.0.0.1:8080")));
        assert!(!listens_in(&t, addr("127.0.0.1:8081")));
        assert!(!listens_in(&t, addr("127.0.0.2:8080")));
        // A wildcard bind would take 127.0.0.1:8080 too.
        assert!(listens_in(&t, addr("0.0.0.0:8080")));
    }

    #[test]
    fn a_wildcard_listener_conflicts_with_every_address_on_its_port() {
        let t = table(&["   0: 00000000:1F90 00000000:0000 0A 0:0"]);
        assert!(listens_in(&t, addr("127.0.0.1:8080")));
        assert!(listens_in(&t, addr("10.1.2.3:8080")));
        assert!(!listens_in(&t, addr("127.0.0.1:9090")));
    }

    #[test]
    fn sockets_that_do_not_listen_do_not_conflict() {
        let lo = v4_hex([127, 0, 0, 1]);
        // ESTABLISHED (01), FIN_WAIT2 (05), TIME_WAIT (06), CLOSE (07): what a killed
        // broker's accepted connections leave behind on its port.
        let lines: Vec<String> = ["01", "05", "06", "07"]
            .iter()
            .map(|st| format!("   0: {lo}:1F90 {lo}:D431 {st} 0:0"))
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert!(!listens_in(&table(&refs), addr("127.0.0.1:8080")));
    }

    #[test]
    fn ipv6_listeners_are_parsed_and_v4_mapped_ones_hold_the_ipv4_address() {
        let any6 = "0".repeat(32);
        let t = table(&[&format!("   0: {any6}:1F90 {any6}:0000 0A 0:0")]);
        assert!(listens_in(&t, addr("[::1]:8080")));
        assert!(listens_in(&t, addr("127.0.0.1:8080")));

        let word = |b: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(b));
        let loopback6 = format!(
            "{}{}{}{}",
            word([0; 4]),
            word([0; 4]),
            word([0; 4]),
            word([0, 0, 0, 1])
        );
        let t = table(&[&format!("   0: {loopback6}:1F90 {any6}:0000 0A 0:0")]);
        assert!(listens_in(&t, addr("[::1]:8080")));
        assert!(!listens_in(&t, addr("[::2]:8080")));

        let mapped = format!(
            "{}{}{}{}",
            word([0; 4]),
            word([0; 4]),
            word([0, 0, 0xff, 0xff]),
            word([127, 0, 0, 1])
        );
        let t = table(&[&format!("   0: {mapped}:1F90 {any6}:0000 0A 0:0")]);
        assert!(listens_in(&t, addr("127.0.0.1:8080")));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let t = table(&[
            "",
            "nonsense",
            "   0: ZZZZ:1F90 0:0 0A",
            "   0: 0100007F:XYZ 0:0 0A",
        ]);
        assert!(!listens_in(&t, addr("127.0.0.1:8080")));
    }

    #[test]
    fn a_listener_that_closes_while_waited_for_frees_the_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(l);
        });
        assert!(!still_taken_after(a, Duration::from_secs(10)).unwrap());
        closer.join().unwrap();
    }

    #[test]
    fn this_process_listening_socket_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        assert!(someone_listens(a).unwrap());
        assert!(still_taken_after(a, Duration::from_millis(50)).unwrap());
    }
}
