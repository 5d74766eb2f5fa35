//! What operators drop into their Prometheus and Grafana
//! (`deploy/prometheus/alerts.yml`, `deploy/grafana/slip-sockets.json`):
//! the rules pass `promtool check rules` and each alert fires in
//! `alerts.test.yml`; every dashboard query is PromQL that promtool parses;
//! and every metric either names is one a real node exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::cluster::Cluster;
use crate::support::*;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

/// Runs promtool (scripts/test.sh installs it: Debian's `prometheus`).
fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("promtool runs (scripts/test.sh installs Debian's prometheus): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The `slip_…` names in `text`, as families: a counter's `_total`, a
/// histogram's `_bucket`, `_count` and `_sum` are their family's.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("slip_") {
        let after = &rest[at..];
        let end = after.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(after.len());
        let name = &after[..end];
        let family = ["_total", "_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.insert(family.to_owned());
        rest = &after[end..];
    }
    names
}

/// The metric families a real control node and edge export, once their
/// link has had its round trip measured (a family labelled by peer has no
/// series before).
async fn exported() -> BTreeSet<String> {
    let backend = Backend::start(chat).await;
    let cluster = Cluster::start(&backend.url, 1, 1).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut families = BTreeSet::new();
        for url in [cluster.control_metrics(0), cluster.edges[0].metrics.clone()] {
            let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
            let types = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next());
            families.extend(types.map(str::to_owned));
        }
        if families.contains("slip_link_rtt_seconds") || tokio::time::Instant::now() > deadline {
            return families;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(deploy("grafana/slip-sockets.json")).unwrap();
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every query of the dashboard, with Grafana's variables as Prometheus would get them.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr.replace("$__rate_interval", "5m").replace("$region", ".*").replace("$node", ".*");
            queries.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    queries
}

#[test]
fn alert_rules_pass_promtool_and_each_alert_fires_in_its_test() {
    let dir = deploy("prometheus");
    let checked = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts.test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has its test.
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts.test.yml")).unwrap();
    for line in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {line}")), "{line} has no test in alerts.test.yml");
    }
}

#[test]
fn the_dashboard_is_laid_out_and_its_queries_are_promql() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "slip-sockets");
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels {
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{} fits the 24 columns", panel["title"]);
        if panel["type"] != "row" {
            assert!(!panel["targets"].as_array().unwrap().is_empty(), "{} has a query", panel["title"]);
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{} uses the chosen Prometheus", panel["title"]);
        }
    }
    // promtool parses each query, as a recording rule.
    let dir = std::env::temp_dir().join(format!("slip-dashboard-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_queries(&dashboard).iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        ));
    }
    std::fs::write(dir.join("dashboard.yml"), rules).unwrap();
    let checked = std::panic::catch_unwind(|| promtool(&["check", "rules", "dashboard.yml"], &dir));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(checked.is_ok_and(|c| c.contains("SUCCESS")), "a dashboard query is not PromQL");
}

#[tokio::test]
async fn alerts_and_the_dashboard_name_only_metrics_the_nodes_export() {
    let exported = exported().await;
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let queries: String = dashboard_queries(&dashboard()).into_iter().map(|(_, q)| q + "\n").collect();
    for (what, text) in [("alerts.yml", rules), ("slip-sockets.json", queries)] {
        let named = metric_names(&text);
        assert!(named.len() > 5, "{what}: {named:?}");
        let unknown: Vec<&String> = named.difference(&exported).collect();
        assert!(unknown.is_empty(), "{what} names metrics no node exports: {unknown:?}");
    }
}
