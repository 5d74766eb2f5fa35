//! The default metadata of a new connection, from its handshake:
//! `{"headers": {…}, "ip": "…", "path": "/…", "query": "a=1&b=2"}`.
//!
//! Header names are lower case; repeated headers are joined with ", ";
//! values that are not UTF-8 are left out. `query` is the raw query string
//! without the `?` (empty when there is none), so nothing is lost in parsing.

use std::net::SocketAddr;

use serde_json::{Map, Value, json};

/// Largest handshake, counted as the bytes of its path, query, header names
/// and values: they become the connection's metadata, copied into every
/// callback, so a client picks this size and the edge bounds it (more is
/// refused with 431). As SET_METADATA's own limit, 16 KiB.
pub const MAX_HANDSHAKE_BYTES: usize = slip_proto::limits::MAX_METADATA_BYTES;

/// The handshake's size as [`MAX_HANDSHAKE_BYTES`] counts it.
pub fn handshake_bytes<B>(request: &http::Request<B>) -> usize {
    let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    headers + request.uri().path().len() + request.uri().query().map_or(0, str::len)
}

pub fn from_handshake<B>(request: &http::Request<B>, peer: SocketAddr) -> Value {
    let mut headers = Map::new();
    for (name, value) in request.headers() {
        let Ok(value) = value.to_str() else { continue };
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
            }
        }
    }
    json!({
        "headers": headers,
        "ip": peer.ip().to_canonical().to_string(),
        "path": request.uri().path(),
        "query": request.uri().query().unwrap_or(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_becomes_metadata() {
        let request = http::Request::builder().uri("/ab?c=1").header("x-a", "12345").body(()).unwrap();
        assert_eq!(handshake_bytes(&request), 3 + 5 + 3 + 3);
    }

    #[test]
    fn carries_headers_ip_path_and_query() {
        let request = http::Request::builder()
            .uri("/room/7?name=ann&x=1")
            .header("Host", "example.com")
            .header("X-Tag", "a")
            .header("X-Tag", "b")
            .body(())
            .unwrap();
        let peer: SocketAddr = "[::ffff:10.1.2.3]:5000".parse().unwrap();
        assert_eq!(
            from_handshake(&request, peer),
            json!({
                "headers": {"host": "example.com", "x-tag": "a, b"},
                "ip": "10.1.2.3",
                "path": "/room/7",
                "query": "name=ann&x=1",
            })
        );
    }
}
