//! Finding control nodes through DNS: `SLIP_PEERS=dns:NAME:PORT` resolves
//! NAME (A and AAAA) every few seconds; new addresses are dialed, addresses
//! gone from the answer are no longer redialed once their link ends. On Fly
//! the name is `control.process.<app>.internal`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::quic::QuicNode;

/// Default time between resolutions.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// Time one DNS query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A `dns:NAME:PORT` peers entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPeers {
    /// The DNS name whose addresses are the peers.
    pub name: String,
    /// Their link port.
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

/// The first `nameserver` of /etc/resolv.conf, on port 53: which address
/// family the peers are likely reached over (Fly's resolver is IPv6).
pub fn system_nameserver() -> Option<SocketAddr> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .find_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
}

/// A resolver asking `server` (UDP, then TCP for a truncated answer), or the
/// system's resolvers with resolv.conf's options when `server` is `None`.
/// Nothing is cached past one refresh: membership follows DNS closely.
pub fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match server {
        Some(server) => {
            let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
            (udp.port, tcp.port) = (server.port(), server.port());
            let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(vec![name_server]), provider)
        }
        None => TokioResolver::builder(provider).map_err(|e| format!("reading the system's DNS configuration: {e}"))?,
    };
    let options = builder.options_mut();
    options.timeout = QUERY_TIMEOUT;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.positive_max_ttl = Some(Duration::from_secs(1));
    options.negative_max_ttl = Some(Duration::from_secs(1));
    builder.build().map_err(|e| e.to_string())
}

/// The A and AAAA addresses of `name`.
pub async fn resolve(resolver: &TokioResolver, name: &str) -> Result<Vec<IpAddr>, String> {
    let found = resolver.lookup_ip(name).await.map_err(|e| format!("resolving {name}: {e}"))?;
    Ok(found.iter().collect())
}

/// Keeps `node` dialing whatever `peers` resolves to, until it closes.
pub fn spawn(node: Arc<QuicNode>, peers: DnsPeers, resolver: TokioResolver, refresh: Duration) {
    node.clone().spawn(async move {
        let mut known: HashSet<SocketAddr> = HashSet::new();
        loop {
            match resolve(&resolver, &peers.name).await {
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

    /// A DNS server on loopback, UDP and TCP on one port, answering `name`
    /// with `ips`: over UDP only "truncated", so the whole answer needs TCP.
    async fn truncating_server(ips: Vec<IpAddr>) -> SocketAddr {
        use hickory_resolver::proto::op::{Message, OpCode};
        use hickory_resolver::proto::rr::rdata::{A, AAAA};
        use hickory_resolver::proto::rr::{RData, Record, RecordType};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        fn answer(query: &[u8], ips: &[IpAddr], truncate: bool) -> Vec<u8> {
            let query = Message::from_vec(query).unwrap();
            let mut reply = Message::response(query.metadata.id, OpCode::Query);
            reply.metadata.recursion_available = true;
            reply.metadata.truncation = truncate;
            let question = query.queries[0].clone();
            if !truncate {
                for ip in ips {
                    let rdata = match (ip, question.query_type()) {
                        (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                        (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                        _ => continue,
                    };
                    reply.add_answer(Record::from_rdata(question.name().clone(), 1, rdata));
                }
            }
            reply.add_query(question);
            reply.to_vec().unwrap()
        }

        // DNS over TCP must answer on the same port as UDP: find a port free
        // for both (another test may hold the TCP side of a free UDP port).
        let mut bound = None;
        for _ in 0..100 {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                bound = Some((udp, addr, tcp));
                break;
            }
        }
        let (udp, addr, tcp) = bound.expect("a port free for both UDP and TCP");
        let for_udp = ips.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let _ = udp.send_to(&answer(&buf[..n], &for_udp, true), from).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let ips = ips.clone();
                tokio::spawn(async move {
                    while let Ok(len) = stream.read_u16().await {
                        let mut query = vec![0u8; usize::from(len)];
                        if stream.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        let reply = answer(&query, &ips, false);
                        let _ = stream.write_u16(reply.len() as u16).await;
                        let _ = stream.write_all(&reply).await;
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn many_records_through_a_truncated_answer_and_tcp() {
        // 60 A records and an AAAA: far past 512 bytes of UDP.
        let mut ips: Vec<IpAddr> = (1..=60).map(|i| IpAddr::from([127, 0, 1, i])).collect();
        ips.push("::9".parse().unwrap());
        let server = truncating_server(ips.clone()).await;
        let mut found = resolve(&resolver(Some(server)).unwrap(), "control.slip.test.").await.unwrap();
        found.sort();
        ips.sort();
        assert_eq!(found, ips);
        assert!(resolve(&resolver(Some("127.0.0.1:9".parse().unwrap())).unwrap(), "x.test.").await.is_err());
    }
}
