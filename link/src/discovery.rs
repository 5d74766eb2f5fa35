//! Finding control nodes through DNS: `SLIP_PEERS=dns:NAME:PORT` resolves
//! NAME (A and AAAA) every few seconds; new addresses are dialed, addresses
//! gone from the answer are no longer redialed once their link ends. On Fly
//! the name is `control.process.<app>.internal`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::dns::{self, DnsError, TYPE_A, TYPE_AAAA};
use crate::quic::QuicNode;

/// Default time between resolutions.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// Time one DNS query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest DNS answer read over UDP.
const MAX_ANSWER_BYTES: usize = 4096;

/// A `dns:NAME:PORT` peers entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPeers {
    pub name: String,
    pub port: u16,
}

impl DnsPeers {
    /// Parses `dns:NAME:PORT`; `None` for anything else.
    pub fn parse(entry: &str) -> Option<Self> {
        let rest = entry.strip_prefix("dns:")?;
        let (name, port) = rest.rsplit_once(':')?;
        Some(Self { name: name.to_owned(), port: port.parse().ok()? })
    }
}

/// The first `nameserver` of /etc/resolv.conf, on port 53.
pub fn system_nameserver() -> Option<SocketAddr> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .find_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
}

/// The A and AAAA addresses of `name`, asked of `server`.
pub async fn resolve(server: SocketAddr, name: &str) -> Result<Vec<IpAddr>, String> {
    let bind: SocketAddr = if server.is_ipv6() { "[::]:0".parse() } else { "0.0.0.0:0".parse() }
        .map_err(|e: std::net::AddrParseError| e.to_string())?;
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    for qtype in [TYPE_A, TYPE_AAAA] {
        let id: u16 = rand::random();
        let query = dns::query(id, name, qtype).map_err(|e| e.to_string())?;
        socket.send(&query).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; MAX_ANSWER_BYTES];
        let answer = tokio::time::timeout(QUERY_TIMEOUT, async {
            loop {
                let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
                match dns::answers(id, &buf[..n]) {
                    Err(DnsError::WrongId) => continue, // a late answer to an earlier query
                    other => return other.map_err(|e| e.to_string()),
                }
            }
        })
        .await
        .map_err(|_| format!("no answer from {server} for {name}"))??;
        found.extend(answer);
    }
    Ok(found)
}

/// Keeps `node` dialing whatever `peers` resolves to, for as long as it lives.
pub fn spawn(node: Arc<QuicNode>, peers: DnsPeers, server: SocketAddr, refresh: Duration) {
    tokio::spawn(async move {
        let mut known: HashSet<SocketAddr> = HashSet::new();
        loop {
            match resolve(server, &peers.name).await {
                Ok(ips) => {
                    let now: HashSet<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, peers.port)).collect();
                    for added in now.difference(&known) {
                        tracing::info!(addr = %added, name = peers.name, "control node found in DNS");
                        node.dial(*added);
                    }
                    for gone in known.difference(&now) {
                        tracing::info!(addr = %gone, name = peers.name, "control node gone from DNS");
                        node.forget(*gone);
                    }
                    known = now;
                }
                // Keep what we know: a DNS hiccup is not a cluster change.
                Err(e) => tracing::warn!(name = peers.name, error = e, "DNS discovery failed"),
            }
            tokio::time::sleep(refresh).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dns_entries() {
        assert_eq!(
            DnsPeers::parse("dns:control.process.app.internal:7071"),
            Some(DnsPeers { name: "control.process.app.internal".into(), port: 7071 })
        );
        assert_eq!(DnsPeers::parse("10.0.0.1:7071"), None);
        assert_eq!(DnsPeers::parse("dns:name"), None);
        assert_eq!(DnsPeers::parse("dns:name:port"), None);
    }

    #[tokio::test]
    async fn resolves_through_a_real_server_on_loopback() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                let reply = dns::answer(&buf[..n], &["127.0.0.9".parse().unwrap(), "::9".parse().unwrap()]).unwrap();
                server.send_to(&reply, from).await.unwrap();
            }
        });
        let ips = resolve(addr, "control.slip.test").await.unwrap();
        assert_eq!(ips, vec!["127.0.0.9".parse::<IpAddr>().unwrap(), "::9".parse().unwrap()]);
    }
}
