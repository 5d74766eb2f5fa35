//! `compare`: every scenario at every size on our gateway and on Pushpin,
//! one after the other on the same machine with the same clients and backend.
//! Prints a markdown table with ratios; with `--out` also writes the raw
//! results (JSON) and charts (SVG), and with `--doc` puts the table and the
//! charts between the markers in a markdown page.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::backend;
use crate::plot::{self, Series};
use crate::scenario::fanout::{self, Fanout, Plan};
use crate::scenario::idle::{self, Idle};
use crate::scenario::inbound::{self, Inbound};
use crate::target::Target;

/// Where the generated part of the benchmarks page starts and ends.
pub const BEGIN_MARK: &str = "<!-- compare:begin -->";
pub const END_MARK: &str = "<!-- compare:end -->";
/// Publishes allowed ahead of subscriber 0 in the fan-out runs.
const WINDOW: usize = 32;
/// Payload bytes per published message, besides the stamp.
const PAYLOAD: usize = 64;

pub struct Sizes {
    pub idle: Vec<usize>,
    pub fanout: Vec<usize>,
    pub inbound: usize,
    pub messages: usize,
}

#[derive(Serialize)]
struct Results {
    machine: Machine,
    command: String,
    idle: Vec<Side<Idle>>,
    inbound: Vec<Side<Inbound>>,
    fanout: Vec<FanoutSide>,
}

#[derive(Serialize)]
struct Side<T> {
    size: usize,
    slip: T,
    pushpin: T,
}

#[derive(Serialize)]
struct FanoutSide {
    size: usize,
    slip: Fanout,
    pushpin: Fanout,
    floor: Fanout,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    cpu: String,
    memory_gib: u64,
    kernel: String,
    slip: String,
    pushpin: String,
    date: String,
}

pub async fn run(slip: &str, sizes: Sizes, out: Option<PathBuf>, doc: Option<PathBuf>) -> anyhow::Result<()> {
    let machine = Machine::here(slip);
    // The command as rerun from the project root: without the binary's path.
    let mut args = std::env::args().skip(1).peekable();
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--slip" {
            args.next();
        } else if !arg.starts_with("--slip=") {
            command.push(arg);
        }
    }
    let command = command.join(" ");
    // Between runs: a pause, so one gateway's sockets are gone before the next
    // starts, and a fresh backend, so no run inherits another's connections.
    let settle = || tokio::time::sleep(Duration::from_secs(2));
    let ours = async || -> anyhow::Result<Target> {
        settle().await;
        Target::slip_dev(slip, backend::start().await?).await
    };
    let theirs = async || -> anyhow::Result<Target> {
        settle().await;
        Target::pushpin(backend::start().await?).await
    };
    let mut results = Results { machine, command, idle: vec![], inbound: vec![], fanout: vec![] };
    for &size in &sizes.idle {
        let slip = idle::run(&ours().await?, size).await?;
        let pushpin = idle::run(&theirs().await?, size).await?;
        results.idle.push(Side { size, slip, pushpin });
    }
    if sizes.inbound > 0 {
        let size = sizes.inbound;
        let slip = inbound::run(&ours().await?, size, sizes.messages).await?;
        let pushpin = inbound::run(&theirs().await?, size, sizes.messages).await?;
        results.inbound.push(Side { size, slip, pushpin });
    }
    for &size in &sizes.fanout {
        let plan = Plan { subscribers: size, messages: sizes.messages, window: WINDOW, payload: PAYLOAD };
        let slip = fanout::run(&ours().await?, plan).await?;
        let pushpin = fanout::run(&theirs().await?, plan).await?;
        settle().await;
        let floor = fanout::run(&Target::floor().await?, plan).await?;
        results.fanout.push(FanoutSide { size, slip, pushpin, floor });
    }
    let table = table(&results);
    println!("{table}");
    if let Some(dir) = out {
        write_files(&dir, &results)?;
        if let Some(doc) = doc {
            splice(&doc, &section(&results, &table, &dir, &doc))?;
        }
    }
    Ok(())
}

fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 { format!("{:.2}", ours / theirs) } else { "-".into() }
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

fn table(r: &Results) -> String {
    let mut t = String::from("| scenario | size | slip dev | Pushpin | slip / Pushpin |\n|---|---|---|---|---|\n");
    let mut row = |name: &str, size: usize, ours: String, theirs: String, ratio: String| {
        t += &format!("| {name} | {size} | {ours} | {theirs} | {ratio} |\n");
    };
    for s in &r.idle {
        let (a, b) = (&s.slip, &s.pushpin);
        row(
            "idle memory per connection",
            s.size,
            kib(a.bytes_per_connection),
            kib(b.bytes_per_connection),
            ratio(a.bytes_per_connection, b.bytes_per_connection),
        );
        row(
            "handshake latency p50 / p99 (with OPEN callback)",
            s.size,
            a.handshake.short(),
            b.handshake.short(),
            String::new(),
        );
        row(
            "kernel TCP buffers per connection (machine-wide, both ends)",
            s.size,
            format!("{:.0} B", a.kernel_bytes_per_connection),
            format!("{:.0} B", b.kernel_bytes_per_connection),
            String::new(),
        );
        row(
            "new connections/s (with OPEN callback)",
            s.size,
            format!("{:.0}", a.connects_per_sec),
            format!("{:.0}", b.connects_per_sec),
            ratio(a.connects_per_sec, b.connects_per_sec),
        );
        if a.failed + b.failed > 0 {
            row("connections refused", s.size, a.failed.to_string(), b.failed.to_string(), String::new());
        }
    }
    for s in &r.inbound {
        let (a, b) = (&s.slip, &s.pushpin);
        row(
            "inbound echoes/s",
            s.size,
            format!("{:.0}", a.echoes_per_sec),
            format!("{:.0}", b.echoes_per_sec),
            ratio(a.echoes_per_sec, b.echoes_per_sec),
        );
        row("inbound round trip p50 / p99", s.size, a.latency.short(), b.latency.short(), String::new());
        row(
            "inbound round trips",
            s.size,
            format!("{} of {}", a.round_trips, a.expected),
            format!("{} of {}", b.round_trips, b.expected),
            String::new(),
        );
    }
    for s in &r.fanout {
        let (a, b) = (&s.slip, &s.pushpin);
        row(
            "fan-out deliveries/s",
            s.size,
            format!("{:.0}", a.deliveries_per_sec),
            format!("{:.0}", b.deliveries_per_sec),
            ratio(a.deliveries_per_sec, b.deliveries_per_sec),
        );
        row("fan-out latency p50 / p99", s.size, a.latency.short(), b.latency.short(), String::new());
        row(
            "fan-out delivered",
            s.size,
            format!("{} of {}", a.delivered, a.expected),
            format!("{} of {}", b.delivered, b.expected),
            String::new(),
        );
        row(
            "fan-out deliveries/s against the floor (bare fastwebsockets, in the Pushpin column)",
            s.size,
            format!("{:.0}", a.deliveries_per_sec),
            format!("{:.0}", s.floor.deliveries_per_sec),
            ratio(a.deliveries_per_sec, s.floor.deliveries_per_sec),
        );
    }
    t
}

/// The charts: one per figure that has a target.
fn charts(r: &Results) -> Vec<(&'static str, String)> {
    let idle_sizes: Vec<String> = r.idle.iter().map(|s| s.size.to_string()).collect();
    let fanout_sizes: Vec<String> = r.fanout.iter().map(|s| s.size.to_string()).collect();
    let two = |f: &dyn Fn(&Idle) -> f64| {
        vec![
            Series { name: "slip dev", values: r.idle.iter().map(|s| f(&s.slip)).collect() },
            Series { name: "Pushpin", values: r.idle.iter().map(|s| f(&s.pushpin)).collect() },
        ]
    };
    let three = |f: &dyn Fn(&Fanout) -> f64| {
        vec![
            Series { name: "slip dev", values: r.fanout.iter().map(|s| f(&s.slip)).collect() },
            Series { name: "Pushpin", values: r.fanout.iter().map(|s| f(&s.pushpin)).collect() },
            Series { name: "floor", values: r.fanout.iter().map(|s| f(&s.floor)).collect() },
        ]
    };
    vec![
        (
            "idle-memory.svg",
            plot::bars(
                "Memory per idle connection (lower is better)",
                "KiB",
                &idle_sizes,
                &two(&|i| i.bytes_per_connection / 1024.0),
            ),
        ),
        (
            "connect-rate.svg",
            plot::bars(
                "New connections per second, with the OPEN callback",
                "connections/s",
                &idle_sizes,
                &two(&|i| i.connects_per_sec),
            ),
        ),
        (
            "fanout-rate.svg",
            plot::bars(
                "Fan-out deliveries per second, by subscribers",
                "deliveries/s",
                &fanout_sizes,
                &three(&|f| f.deliveries_per_sec),
            ),
        ),
        (
            "fanout-p99.svg",
            plot::bars(
                "Fan-out publish→receive p99 (lower is better)",
                "ms",
                &fanout_sizes,
                &three(&|f| f.latency.p99_ms),
            ),
        ),
    ]
}

fn write_files(dir: &Path, r: &Results) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(r)? + "\n")?;
    for (name, svg) in charts(r) {
        std::fs::write(dir.join(name), svg)?;
    }
    Ok(())
}

/// The generated part of the page: machine, command, table, charts.
fn section(r: &Results, table: &str, dir: &Path, doc: &Path) -> String {
    let m = &r.machine;
    // Links relative to the page.
    let rel = match doc.parent().and_then(|p| dir.strip_prefix(p).ok()).unwrap_or(dir).display().to_string() {
        same if same.is_empty() => ".".to_owned(),
        rel => rel,
    };
    let mut s = format!(
        "Machine: {} vCPU {}, {} GiB, Linux {}. {}, Pushpin {}. {}, `slip-bench {}`:\n\n{table}\n",
        m.cpus, m.cpu, m.memory_gib, m.kernel, m.slip, m.pushpin, m.date, r.command
    );
    for (name, _) in charts(r) {
        s += &format!("![{name}]({rel}/{name})\n");
    }
    s += &format!("\nRaw figures: [`{rel}/results.json`]({rel}/results.json).\n");
    s
}

/// Replaces what lies between the markers in `doc` with `body`.
fn splice(doc: &Path, body: &str) -> anyhow::Result<()> {
    let page = std::fs::read_to_string(doc).with_context(|| format!("reading {}", doc.display()))?;
    let (Some(begin), Some(end)) = (page.find(BEGIN_MARK), page.find(END_MARK)) else {
        anyhow::bail!("{} has no {BEGIN_MARK} … {END_MARK} section", doc.display());
    };
    anyhow::ensure!(begin < end, "{}: the markers are out of order", doc.display());
    let page = format!("{}{BEGIN_MARK}\n{body}{}", &page[..begin], &page[end..]);
    std::fs::write(doc, page)?;
    Ok(())
}

impl Machine {
    fn here(slip: &str) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let run = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let mem_kib: u64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        Self {
            // The machine's, not this process's: run.sh pins the load generator to one CPU.
            cpus: cpuinfo.lines().filter(|l| l.starts_with("processor")).count(),
            cpu: cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .unwrap_or("unknown")
                .trim()
                .to_owned(),
            memory_gib: mem_kib.div_ceil(1024 * 1024),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            slip: run(slip, &["--version"]),
            pushpin: run("dpkg-query", &["-W", "-f", "${Version}", "pushpin"]),
            date: run("date", &["-u", "+%F"]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_marked_section() {
        let dir = std::env::temp_dir().join(format!("slip-bench-splice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let doc = dir.join("page.md");
        std::fs::write(&doc, format!("before\n{BEGIN_MARK}\nold\n{END_MARK}\nafter\n")).unwrap();
        splice(&doc, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&doc).unwrap(), format!("before\n{BEGIN_MARK}\nnew\n{END_MARK}\nafter\n"));
        std::fs::write(&doc, "no markers").unwrap();
        assert!(splice(&doc, "x").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
