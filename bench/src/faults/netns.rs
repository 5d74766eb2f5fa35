//! Hosts of our own for the fault campaign: a network namespace per node,
//! each joined by a veth pair to one bridge on this machine, which holds an
//! address too, so clients, publishers and the backend here reach every
//! node. Two nodes are cut apart with blackhole routes inside their
//! namespaces (no tc or iptables here); this machine still reaches both.
//! Everything made is deleted when the [`Net`] is dropped, failed run or
//! not. Needs root and `ip` (iproute2).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, bail};

/// One node's host: its namespace and its address on the bridge.
#[derive(Debug, Clone)]
pub struct Host {
    pub ns: String,
    pub ip: Ipv4Addr,
}

pub struct Net {
    id: String,
    bridge: String,
    /// This machine's address on the bridge: where the backend listens.
    pub here: Ipv4Addr,
    pub hosts: Vec<Host>,
    /// Pairs cut apart now, by host index.
    cut: BTreeSet<(usize, usize)>,
}

/// Runs `ip` with `args`; an error says which command failed and why.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Net {
    /// `n` hosts on a bridge of their own, on a /24 picked at random in 10.213.0.0/16.
    pub fn new(n: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(n < 200, "at most 199 hosts");
        let id = format!("{:04x}", rand::random::<u16>());
        let third = u8::from_str_radix(&id[2..], 16).unwrap_or(0);
        let mut net = Self {
            bridge: format!("sf{id}br"),
            here: Ipv4Addr::new(10, 213, third, 1),
            hosts: Vec::new(),
            cut: BTreeSet::new(),
            id,
        };
        // Built step by step: whatever is made before a failure is undone by Drop.
        ip(&["link", "add", &net.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/24", net.here), "dev", &net.bridge])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        for i in 0..n {
            let host = Host { ns: format!("slipf-{}-{i}", net.id), ip: Ipv4Addr::new(10, 213, third, 10 + i as u8) };
            let (outside, inside) = (format!("sf{}v{i}", net.id), format!("sf{}p{i}", net.id));
            ip(&["netns", "add", &host.ns])?;
            net.hosts.push(host.clone());
            ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside])?;
            ip(&["link", "set", &inside, "netns", &host.ns])?;
            ip(&["link", "set", &outside, "master", &net.bridge, "up"])?;
            ip(&["-n", &host.ns, "addr", "add", &format!("{}/24", host.ip), "dev", &inside])?;
            ip(&["-n", &host.ns, "link", "set", &inside, "up"])?;
            ip(&["-n", &host.ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// A command that runs `program` inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command.args(["netns", "exec", &self.hosts[i].ns, program]);
        command
    }

    /// Hosts `a` and `b` can no longer reach each other (both ways).
    pub fn cut(&mut self, a: usize, b: usize) -> anyhow::Result<()> {
        let pair = (a.min(b), a.max(b));
        if a == b || !self.cut.insert(pair) {
            return Ok(());
        }
        ip(&["-n", &self.hosts[a].ns, "route", "add", "blackhole", &format!("{}/32", self.hosts[b].ip)])?;
        ip(&["-n", &self.hosts[b].ns, "route", "add", "blackhole", &format!("{}/32", self.hosts[a].ip)])
    }

    /// Every cut is mended.
    pub fn heal(&mut self) -> anyhow::Result<()> {
        for (a, b) in std::mem::take(&mut self.cut) {
            ip(&["-n", &self.hosts[a].ns, "route", "del", "blackhole", &format!("{}/32", self.hosts[b].ip)])?;
            ip(&["-n", &self.hosts[b].ns, "route", "del", "blackhole", &format!("{}/32", self.hosts[a].ip)])?;
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The veths go with their namespaces; the bridge last.
        for (i, host) in self.hosts.iter().enumerate() {
            let _ = ip(&["netns", "del", &host.ns]);
            // Gone with its namespace, unless it never got there.
            let _ = Command::new("ip").args(["link", "del", &format!("sf{}v{i}", self.id)]).output();
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
