//! A private Pushpin configuration, derived from the one Debian ships: its
//! own run and log directories, every service it needs started by its own
//! runner (its own zurl, not a system-wide one), clients on loopback.
//! Shared by the benchmark and the end-to-end tests (which include this file).

use std::path::Path;

/// Pushpin's config with `rundir`/`logdir` under `dir`, clients on
/// `127.0.0.1:ws_port`, and every `key=value` of `overrides` replaced.
pub fn private_config(shipped: &str, dir: &Path, ws_port: u16, overrides: &[(&str, &str)]) -> String {
    let mut config = String::new();
    for line in shipped.lines() {
        let key = line.split('=').next().unwrap_or_default();
        let line = match key {
            "rundir" => format!("rundir={}/run", dir.display()),
            "logdir" => format!("logdir={}/log", dir.display()),
            "services" => "services=condure,zurl,pushpin-proxy,pushpin-handler".into(),
            "http_port" => format!("http_port=127.0.0.1:{ws_port}"),
            _ => match overrides.iter().find(|(k, _)| *k == key) {
                Some((k, v)) => format!("{k}={v}"),
                None => line.to_owned(),
            },
        };
        config.push_str(&line);
        config.push('\n');
        if line.trim() == "[proxy]" {
            // Point the proxy at our own zurl, not a system-wide one.
            config.push_str("zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in\n");
            config.push_str("zurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream\n");
            config.push_str("zurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out\n");
        }
    }
    config
}
