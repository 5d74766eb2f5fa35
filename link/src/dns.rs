//! Just enough DNS to find control nodes: A and AAAA queries and their
//! answers, as pure code (RFC 1035 wire format, name compression followed).
//! Used by discovery for `SLIP_PEERS=dns:NAME:PORT`, the Fly.io way
//! (`control.process.<app>.internal`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("name {0:?} is not a valid DNS name")]
    BadName(String),
    #[error("answer is truncated or malformed")]
    Malformed,
    #[error("answer is for another query")]
    WrongId,
    #[error("server answered with code {0}")]
    Server(u8),
}

/// A recursive query for `name` of type `qtype`, with `id`.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let mut out = Vec::with_capacity(18 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00]); // recursion desired
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DnsError::BadName(name.to_owned()));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() > 12 + 255 {
        return Err(DnsError::BadName(name.to_owned()));
    }
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

fn u16_at(buf: &[u8], at: usize) -> Result<u16, DnsError> {
    let bytes = buf.get(at..at + 2).ok_or(DnsError::Malformed)?;
    Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// Where the name starting at `at` ends (compression pointers not followed:
/// a pointer ends the name in place).
fn skip_name(buf: &[u8], mut at: usize) -> Result<usize, DnsError> {
    for _ in 0..=255 {
        let len = *buf.get(at).ok_or(DnsError::Malformed)?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xC0 == 0xC0 => return Ok(at + 2),
            l if l & 0xC0 == 0 => at += 1 + usize::from(l),
            _ => return Err(DnsError::Malformed),
        }
    }
    Err(DnsError::Malformed)
}

/// The addresses in an answer to query `id` (A and AAAA records; others skipped).
pub fn answers(id: u16, buf: &[u8]) -> Result<Vec<IpAddr>, DnsError> {
    if buf.len() < 12 {
        return Err(DnsError::Malformed);
    }
    if u16_at(buf, 0)? != id {
        return Err(DnsError::WrongId);
    }
    let rcode = buf[3] & 0x0F;
    if rcode != 0 {
        return Err(DnsError::Server(rcode));
    }
    let questions = u16_at(buf, 4)?;
    let records = u16_at(buf, 6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(buf, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..records {
        at = skip_name(buf, at)?;
        let rtype = u16_at(buf, at)?;
        let class = u16_at(buf, at + 2)?;
        let len = usize::from(u16_at(buf, at + 8)?);
        let data = buf.get(at + 10..at + 10 + len).ok_or(DnsError::Malformed)?;
        at += 10 + len;
        if class != CLASS_IN {
            continue;
        }
        match (rtype, data.len()) {
            (TYPE_A, 4) => out.push(IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3]))),
            (TYPE_AAAA, 16) => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(data);
                out.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// An answer to `query` holding `addresses` (for tests and test servers).
pub fn answer(query: &[u8], addresses: &[IpAddr]) -> Result<Vec<u8>, DnsError> {
    if query.len() < 12 {
        return Err(DnsError::Malformed);
    }
    let end = skip_name(query, 12)? + 4;
    let qtype = u16_at(query, end - 4)?;
    let matching: Vec<&IpAddr> = addresses
        .iter()
        .filter(|a| matches!((a, qtype), (IpAddr::V4(_), TYPE_A) | (IpAddr::V6(_), TYPE_AAAA)))
        .collect();
    let mut out = query.get(..end).ok_or(DnsError::Malformed)?.to_vec();
    out[2] = 0x81; // response, recursion desired
    out[3] = 0x80; // recursion available, no error
    out[6..8].copy_from_slice(&(matching.len() as u16).to_be_bytes());
    out[8..12].fill(0);
    for address in matching {
        out.extend_from_slice(&[0xC0, 12]); // the name in the question
        let (rtype, data): (u16, Vec<u8>) = match address {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&5u32.to_be_bytes()); // TTL
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_answer_round_trip() {
        let v4: IpAddr = "10.0.0.7".parse().unwrap();
        let v6: IpAddr = "fdaa::3".parse().unwrap();
        let q = query(7, "control.process.app.internal", TYPE_A).unwrap();
        assert_eq!(answers(7, &answer(&q, &[v4, v6]).unwrap()), Ok(vec![v4]));
        let q = query(8, "control.process.app.internal.", TYPE_AAAA).unwrap();
        assert_eq!(answers(8, &answer(&q, &[v4, v6]).unwrap()), Ok(vec![v6]));
        assert_eq!(answers(9, &answer(&q, &[v4]).unwrap()), Err(DnsError::WrongId));
    }

    #[test]
    fn rejects_bad_names_and_garbage() {
        assert!(query(1, "a..b", TYPE_A).is_err());
        assert!(query(1, &"x".repeat(64), TYPE_A).is_err());
        for garbage in [&b""[..], &[0; 11], &[0, 1, 0x81, 0x80, 0, 1, 0, 5, 0, 0, 0, 0, 0xff]] {
            assert!(answers(1, garbage).is_err());
        }
        let mut refused = query(1, "a.b", TYPE_A).unwrap();
        refused[3] = 5;
        assert_eq!(answers(1, &refused), Err(DnsError::Server(5)));
    }
}
