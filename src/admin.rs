//! `slip admin`: operate a running cluster through any control node (gRPC
//! `slip.v1.Admin` and `slip.v1.Control`). Tables for people, `--json` for scripts.

use anyhow::Context;
use serde_json::{Value, json};
use slip_proto::pb::admin_client::AdminClient;
use slip_proto::pb::control_client::ControlClient;
use slip_proto::pb::{
    ChannelsRequest, CloseRequest, DrainRequest, GetChannelRequest, GetConnectionRequest, HistoryRequest, NodesRequest,
    PresenceRequest, PublishRequest, SendRequest, publication, publish_request, send_request,
};
use slip_sockets::Signer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::cli::{AdminArgs, AdminCommand};

type Control = ControlClient<InterceptedService<Channel, Signer>>;
type Admin = AdminClient<InterceptedService<Channel, Signer>>;

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    if let AdminCommand::Open { secs } | AdminCommand::Token { secs } = args.command {
        let token = slip_proto::jwt::sign_for(
            args.jwt_secret.as_bytes(),
            slip_proto::jwt::AUD_CONTROL_EVENT,
            slip_proto::jwt::now(),
            secs,
        );
        if matches!(args.command, AdminCommand::Token { .. }) {
            println!("{token}");
        } else {
            // The token rides in the fragment: browsers send it to no server.
            println!("{}/admin#token={token}", args.control.trim_end_matches('/'));
        }
        return Ok(());
    }
    let channel = tonic::transport::Endpoint::from_shared(args.control.clone())
        .with_context(|| format!("{:?} is not a URL; pass --control http://HOST:7070", args.control))?
        .connect()
        .await
        .with_context(|| {
            format!(
                "cannot reach the control API at {}: is a control node running there? (set --control or SLIP_CONTROL_URL)",
                args.control
            )
        })?;
    let signer = Signer::new(args.jwt_secret.as_bytes());
    let mut control: Control = ControlClient::with_interceptor(channel.clone(), signer.clone());
    let mut admin: Admin = AdminClient::with_interceptor(channel, signer);
    let output = match args.command {
        AdminCommand::Nodes => nodes(&mut admin).await?,
        AdminCommand::Stats => stats(&mut admin).await?,
        AdminCommand::Channels { limit } => {
            let channels = admin.channels(ChannelsRequest { limit }).await.map_err(explain)?.into_inner().channels;
            let rows = channels
                .into_iter()
                .map(|c| {
                    json!({"channel": c.channel, "subscribers": c.subscribers, "edges": c.edges, "owner": c.owner,
                        "last_offset": c.last_offset, "history": c.history, "presence": c.presence})
                })
                .collect();
            Output::Table(CHANNEL_COLUMNS, rows)
        }
        AdminCommand::Channel { name } => {
            let info = control.get_channel(GetChannelRequest { channel: name }).await.map_err(explain)?.into_inner();
            Output::Record(json!({
                "channel": info.channel, "owner": info.owner, "edges": info.edges,
                "subscribers": info.subscribers, "last_offset": info.last_offset, "epoch": info.epoch,
                "history": info.history, "presence": info.presence, "replicas": info.replicas,
            }))
        }
        AdminCommand::Connection { id } => {
            let info =
                control.get_connection(GetConnectionRequest { connection_id: id }).await.map_err(explain)?.into_inner();
            let metadata: Value = serde_json::from_str(&info.metadata_json).unwrap_or(Value::Null);
            Output::Record(json!({
                "connection": info.connection_id, "edge": info.edge, "region": info.region,
                "channels": info.channels, "metadata": metadata,
            }))
        }
        AdminCommand::Publish { channel, text, idempotency_key } => {
            let message = Some(publish_request::Message::Text(text));
            let request = PublishRequest { channel, message, idempotency_key: idempotency_key.unwrap_or_default() };
            let reply = control.publish(request).await.map_err(explain)?.into_inner();
            Output::Record(
                json!({"published": true, "offset": reply.offset, "epoch": reply.epoch, "edges": reply.edges}),
            )
        }
        AdminCommand::History { channel, since, epoch, limit } => {
            let request =
                HistoryRequest { channel, since_epoch: epoch.unwrap_or_default(), since_offset: since, limit };
            let reply = control.history(request).await.map_err(explain)?.into_inner();
            if !reply.complete {
                eprintln!(
                    "history is incomplete: it no longer holds every publication asked for (epoch {}, top offset {})",
                    reply.epoch, reply.top_offset
                );
            }
            let rows = reply
                .publications
                .into_iter()
                .map(|p| {
                    let message = match p.message {
                        Some(publication::Message::Text(t)) => t,
                        Some(publication::Message::Binary(b)) => format!("<{} bytes>", b.len()),
                        None => String::new(),
                    };
                    json!({"offset": p.offset, "epoch": reply.epoch, "message": message})
                })
                .collect();
            Output::Table(HISTORY_COLUMNS, rows)
        }
        AdminCommand::Presence { channel, limit } => {
            let reply = control.presence(PresenceRequest { channel, limit }).await.map_err(explain)?.into_inner();
            if (reply.members.len() as u64) < reply.count {
                eprintln!("{} members in all; {} listed", reply.count, reply.members.len());
            }
            let rows = reply
                .members
                .into_iter()
                .map(|m| {
                    let info = serde_json::from_str::<serde_json::Value>(&m.info).unwrap_or(serde_json::Value::Null);
                    json!({"connection": m.connection_id, "info": info})
                })
                .collect();
            Output::Table(PRESENCE_COLUMNS, rows)
        }
        AdminCommand::Send { id, text } => {
            let request = SendRequest { connection_id: id, message: Some(send_request::Message::Text(text)) };
            control.send(request).await.map_err(explain)?;
            Output::Record(json!({"sent": true}))
        }
        AdminCommand::Close { id } => {
            control.close(CloseRequest { connection_id: id, code: 0, reason: String::new() }).await.map_err(explain)?;
            Output::Record(json!({"closed": true}))
        }
        AdminCommand::Drain { node } => {
            let reply = admin.drain(DrainRequest { node_id: node.clone() }).await.map_err(explain)?.into_inner();
            Output::Record(json!({"draining": node, "connections": reply.connections}))
        }
        AdminCommand::Open { .. } | AdminCommand::Token { .. } => unreachable!("answered before connecting"),
    };
    output.print(args.json);
    Ok(())
}

const CHANNEL_COLUMNS: &[&str] = &["channel", "subscribers", "edges", "owner", "last_offset", "history", "presence"];
const HISTORY_COLUMNS: &[&str] = &["offset", "epoch", "message"];
const PRESENCE_COLUMNS: &[&str] = &["connection", "info"];
const NODE_COLUMNS: &[&str] = &["node", "role", "region", "ring_share", "connections", "linked", "rtt_ms", "p99_ms"];

async fn nodes(admin: &mut Admin) -> anyhow::Result<Output> {
    let nodes = admin.nodes(NodesRequest {}).await.map_err(explain)?.into_inner().nodes;
    let rows = nodes
        .into_iter()
        .map(|n| {
            // Since the node started: an edge's callbacks, a control node's publishes.
            let times = if n.role == "edge" { &n.callback_latency } else { &n.publish_latency };
            let p99_ms = slip_metrics::quantile(times, 0.99).map(|s| (s * 1e5).round() / 100.0);
            json!({
                "node": n.node_id, "role": n.role, "region": n.region,
                "ring_share": (n.ring_share * 1000.0).round() / 1000.0,
                "connections": n.connections, "linked": n.linked,
                "rtt_ms": (n.rtt_ms * 100.0).round() / 100.0,
                "deliveries": n.deliveries, "stream_gaps": n.stream_gaps,
                "callback_errors": n.callback_errors, "parked_sessions": n.parked_sessions,
                "publishes": n.publishes, "publishes_refused": n.publishes_refused,
                "stream_divergences": n.stream_divergences, "lease_held": n.lease_held,
                "view_term": n.view_term, "p99_ms": p99_ms, "callback_latency": n.callback_latency, "publish_latency": n.publish_latency,
            })
        })
        .collect();
    Ok(Output::Table(NODE_COLUMNS, rows))
}

async fn stats(admin: &mut Admin) -> anyhow::Result<Output> {
    let nodes = admin.nodes(NodesRequest {}).await.map_err(explain)?.into_inner().nodes;
    let controls = nodes.iter().filter(|n| n.role == "control").count();
    let edges = nodes.iter().filter(|n| n.role == "edge").count();
    let connections: u64 = nodes.iter().map(|n| n.connections).sum();
    Ok(Output::Record(json!({"control_nodes": controls, "edges": edges, "connections": connections})))
}

/// A gRPC error as a sentence that says what to do.
fn explain(status: tonic::Status) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unauthenticated => {
            anyhow::anyhow!("the control node refused the token: pass the cluster's SLIP_JWT_SECRET (--jwt-secret)")
        }
        tonic::Code::NotFound => anyhow::anyhow!("not found: {}", status.message()),
        tonic::Code::InvalidArgument => anyhow::anyhow!("invalid: {}", status.message()),
        tonic::Code::Unavailable => {
            anyhow::anyhow!("unavailable: {} (is the node linked? try `slip admin nodes`)", status.message())
        }
        _ => anyhow::anyhow!("{}: {}", status.code(), status.message()),
    }
}

enum Output {
    /// Rows of objects, and the columns to show, in order.
    Table(&'static [&'static str], Vec<Value>),
    Record(Value),
}

impl Output {
    fn print(&self, as_json: bool) {
        match (self, as_json) {
            (Output::Table(_, rows), true) => println!("{}", Value::Array(rows.clone())),
            (Output::Record(value), true) => println!("{value}"),
            (Output::Record(Value::Object(fields)), false) => {
                let width = fields.keys().map(String::len).max().unwrap_or(0);
                for (key, value) in fields {
                    println!("{key:width$}  {}", plain(value));
                }
            }
            (Output::Record(value), false) => println!("{value}"),
            (Output::Table(columns, rows), false) => print_table(columns, rows),
        }
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn print_table(columns: &[&str], rows: &[Value]) {
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let cells: Vec<Vec<String>> =
        rows.iter().map(|row| columns.iter().map(|c| plain(row.get(*c).unwrap_or(&Value::Null))).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].len()).chain([c.len()]).max().unwrap_or(0))
        .collect();
    let line = |values: Vec<&str>| {
        values.iter().zip(&widths).map(|(v, w)| format!("{v:w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>().iter().map(String::as_str).collect())
    );
    for row in &cells {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
}
