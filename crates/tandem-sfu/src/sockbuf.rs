//! Kernel buffers of the SFU's UDP socket, and the datagrams the kernel dropped on it.
//!
//! One socket carries every participant's traffic. While the SFU loop forwards one
//! frame to many subscribers, the RTCP of all of them (receiver reports, TWCC
//! feedback, NACKs) and the publishers' media keep arriving; the default receive
//! buffer (≈ 208 KiB, a few hundred small datagrams) overflows within tens of
//! milliseconds, and a publisher's packet dropped there is lost for every
//! subscriber at once. So the buffers are raised, and the drops are counted.

use std::net::SocketAddr;

/// Asks for `bytes` of receive and send buffer; returns what the kernel granted
/// (Linux caps the request at `net.core.rmem_max` / `wmem_max` and doubles it for
/// bookkeeping).
pub fn configure(socket: &tokio::net::UdpSocket, bytes: usize) -> (usize, usize) {
    let s = socket2::SockRef::from(socket);
    if bytes > 0 {
        if let Err(e) = s.set_recv_buffer_size(bytes) {
            tracing::warn!(error = %e, "sfu: cannot set the UDP receive buffer");
        }
        if let Err(e) = s.set_send_buffer_size(bytes) {
            tracing::warn!(error = %e, "sfu: cannot set the UDP send buffer");
        }
    }
    (
        s.recv_buffer_size().unwrap_or(0),
        s.send_buffer_size().unwrap_or(0),
    )
}

/// Datagrams the kernel dropped on the UDP socket bound to `local` (full receive
/// buffer), from the `drops` column of `/proc/net/udp` or `udp6`; `None` where that
/// is not available.
pub fn kernel_drops(local: SocketAddr) -> Option<u64> {
    let file = if local.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    parse_drops(&std::fs::read_to_string(file).ok()?, local.port())
}

/// The summed `drops` of the lines whose local port is `port`.
fn parse_drops(table: &str, port: u16) -> Option<u64> {
    let wanted = format!(":{port:04X}");
    let mut found = None;
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(drops)) = (fields.get(1), fields.last()) else {
            continue;
        };
        if local.ends_with(&wanted) {
            *found.get_or_insert(0) += drops.parse::<u64>().unwrap_or(0);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:1ECA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17
  124: 0100007F:1ECB 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 5
";

    #[test]
    fn drops_are_read_for_the_port() {
        assert_eq!(parse_drops(TABLE, 7882), Some(17));
        assert_eq!(parse_drops(TABLE, 7883), Some(5));
        assert_eq!(parse_drops(TABLE, 9), None);
    }

    #[tokio::test]
    async fn buffers_are_raised_and_drops_readable() {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (before, _) = configure(&socket, 0);
        let (rcv, snd) = configure(&socket, 1 << 20);
        assert!(rcv >= before && snd > 0, "{before} → {rcv}/{snd}");
        if cfg!(target_os = "linux") {
            assert_eq!(kernel_drops(socket.local_addr().unwrap()), Some(0));
        }
    }
}
