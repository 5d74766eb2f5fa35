//! Channel streams on one node (`slip dev`): offsets within an epoch that
//! outlive an empty channel, history with its bounds, idempotency keys, the
//! History API, `slip admin history`, and the SDK's confirmed publishes.

use slip_proto::pb::{
    GetChannelRequest, HistoryRequest, PublishRequest, SubscriptionRequest, publication, publish_request,
};
use slip_sockets::{GrpcControl, Payload};

use crate::support::*;

fn publish(channel: &str, text: &str, key: &str) -> PublishRequest {
    PublishRequest {
        channel: channel.into(),
        message: Some(publish_request::Message::Text(text.into())),
        idempotency_key: key.into(),
    }
}

fn history(channel: &str, since_epoch: &str, since_offset: u64) -> HistoryRequest {
    HistoryRequest { channel: channel.into(), since_epoch: since_epoch.into(), since_offset, limit: 0 }
}

fn texts(reply: &slip_proto::pb::HistoryReply) -> Vec<(u64, String)> {
    reply
        .publications
        .iter()
        .map(|p| match &p.message {
            Some(publication::Message::Text(t)) => (p.offset, t.clone()),
            other => panic!("not text: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn publishes_take_consecutive_offsets_of_one_epoch_and_history_returns_them() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut grpc = gateway.grpc().await;

    // Nobody subscribed: the stream keeps them all the same.
    let mut epochs = Vec::new();
    for i in 1..=5u64 {
        let reply = grpc.publish(publish("news", &format!("n{i}"), "")).await.unwrap().into_inner();
        assert_eq!((reply.offset, reply.edges), (i, 0));
        epochs.push(reply.epoch);
    }
    let epoch = epochs[0].clone();
    assert!(!epoch.is_empty() && epochs.iter().all(|e| *e == epoch), "{epochs:?}");

    let all = grpc.history(history("news", "", 0)).await.unwrap().into_inner();
    assert_eq!((all.epoch.as_str(), all.top_offset, all.complete), (epoch.as_str(), 5, true));
    assert_eq!(texts(&all), (1..=5).map(|i| (i, format!("n{i}"))).collect::<Vec<_>>());
    let after_3 = grpc.history(history("news", &epoch, 3)).await.unwrap().into_inner();
    assert_eq!(texts(&after_3), [(4, "n4".to_owned()), (5, "n5".to_owned())]);
    assert!(after_3.complete);
    let other_epoch = grpc.history(history("news", "not-this-one", 3)).await.unwrap().into_inner();
    assert!(!other_epoch.complete, "offsets of another epoch mean nothing here");
    assert_eq!(texts(&other_epoch).len(), 5);

    let info = grpc.get_channel(GetChannelRequest { channel: "news".into() }).await.unwrap().into_inner();
    assert_eq!((info.last_offset, info.epoch.as_str()), (5, epoch.as_str()));
}

#[tokio::test]
async fn history_is_bounded_and_says_so() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start_with(&backend.url, &["--history-size", "3"]).await;
    let mut grpc = gateway.grpc().await;
    for i in 1..=5 {
        grpc.publish(publish("news", &format!("n{i}"), "")).await.unwrap();
    }
    let all = grpc.history(history("news", "", 0)).await.unwrap().into_inner();
    assert_eq!(texts(&all).iter().map(|(o, _)| *o).collect::<Vec<_>>(), [3, 4, 5]);
    assert!(!all.complete, "1 and 2 are no longer held");
    let recent = grpc.history(history("news", &all.epoch, 2)).await.unwrap().into_inner();
    assert!(recent.complete, "everything after 2 is held");
}

#[tokio::test]
async fn a_repeated_idempotency_key_is_delivered_once_and_answered_with_the_first_offset() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut client = Client::connect(&gateway).await;
    let id = nth_open(&backend, 0).await;
    let mut grpc = gateway.grpc().await;
    grpc.subscribe(SubscriptionRequest { connection_id: id, channel: "orders".into(), ..Default::default() })
        .await
        .unwrap();

    let first = grpc.publish(publish("orders", "order 17", "order-17")).await.unwrap().into_inner();
    let again = grpc.publish(publish("orders", "order 17", "order-17")).await.unwrap().into_inner();
    assert_eq!((again.offset, again.epoch.as_str()), (first.offset, first.epoch.as_str()));
    assert_eq!((first.edges, again.edges), (1, 0), "the repeat went to no edge");
    grpc.publish(publish("orders", "marker", "")).await.unwrap();
    assert_eq!(client.texts(2).await, ["order 17", "marker"], "the repeat was not delivered");

    let too_long = "k".repeat(129);
    let refused = grpc.publish(publish("orders", "x", &too_long)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn offsets_outlive_an_empty_channel() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut client = Client::connect(&gateway).await;
    let id = nth_open(&backend, 0).await;
    let mut grpc = gateway.grpc().await;
    grpc.subscribe(SubscriptionRequest { connection_id: id, channel: "room".into(), ..Default::default() })
        .await
        .unwrap();
    let first = grpc.publish(publish("room", "one", "")).await.unwrap().into_inner();
    assert_eq!(client.text().await, "one");
    drop(client);
    wait_for_no_edges(&gateway, "room").await;
    let later = grpc.publish(publish("room", "two", "")).await.unwrap().into_inner();
    assert_eq!((later.offset, later.epoch.as_str()), (first.offset + 1, first.epoch.as_str()));
}

/// Waits until the channel's owner lists no interested edge: the channel is empty.
async fn wait_for_no_edges(gateway: &Gateway, channel: &str) {
    let mut grpc = gateway.grpc().await;
    for _ in 0..100 {
        let request = GetChannelRequest { channel: channel.into() };
        if grpc.get_channel(request).await.is_ok_and(|c| c.into_inner().edges == 0) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{channel} kept its subscribers");
}

#[tokio::test]
async fn slip_admin_history_prints_the_publications() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let mut grpc = gateway.grpc().await;
    for text in ["a", "b", "c"] {
        grpc.publish(publish("log", text, "")).await.unwrap();
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_slip"))
        .args(["admin", "--control", &gateway.control, "--jwt-secret", SECRET, "--json", "history", "log"])
        .args(["--since", "1"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<(u64, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["offset"].as_u64().unwrap(), r["message"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(got, [(2, "b".to_owned()), (3, "c".to_owned())]);
}

#[tokio::test]
async fn the_sdk_publishes_with_a_key_and_reads_history() {
    let backend = Backend::start(accept_all).await;
    let gateway = Gateway::start(&backend.url).await;
    let sdk = GrpcControl::connect(gateway.control.clone(), SECRET.as_bytes()).await.unwrap();
    let a = sdk.publish("feed", Payload::Text("a".into()), None).await.unwrap();
    let b = sdk.publish("feed", Payload::Text("b".into()), None).await.unwrap();
    assert_eq!((a.offset, b.offset), (1, 2), "each publish gets a key of its own");
    let keyed = sdk.publish("feed", Payload::Text("c".into()), Some("c".into())).await.unwrap();
    let repeat = sdk.publish("feed", Payload::Text("c".into()), Some("c".into())).await.unwrap();
    assert_eq!((keyed.offset, repeat.offset), (3, 3));
    let history = sdk.history("feed", Some((&a.epoch, 1)), 0).await.unwrap();
    assert!(history.complete);
    assert_eq!(history.publications, [(2, Payload::Text("b".into())), (3, Payload::Text("c".into()))]);
}

/// A publish flood over many channels: history stays within its byte bound
/// on the node, as the node's own gauge reports it, the newest survive, and
/// the process's memory stays flat from one flood to the next.
#[tokio::test]
async fn a_publish_flood_keeps_history_within_its_bytes() {
    let backend = Backend::start(accept_all).await;
    let max_bytes = 256 * 1024;
    let max = max_bytes.to_string();
    let extra = ["--history-max-bytes", max.as_str(), "--metrics-listen", "127.0.0.1:0"];
    let args = ["dev", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"];
    let (child, lines) = spawn_slip(
        &[&args[..], &extra[..], &["--target-url", &backend.url, "--jwt-secret", SECRET]].concat(),
        &["Control API:", "Metrics:"],
    )
    .await;
    let control = lines[0].split_whitespace().next().unwrap().to_owned();
    let scrape = lines[1].clone();
    let mut grpc = grpc_to(&control).await;
    let rss_kib = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id().unwrap())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_owned();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
    };
    // Four floods of 20 MB each through 200 channels, each 80 times the bound.
    const FLOODS: u64 = 4;
    let mut rss = Vec::new();
    for flood in 0..FLOODS {
        let payload = "x".repeat(4096);
        let requests =
            (0..5000).map(move |i| publish(&format!("flood-{}", i % 200), &format!("{flood}.{i} {payload}"), ""));
        let reply = grpc.publish_stream(futures_util::stream::iter(requests)).await.unwrap().into_inner();
        assert_eq!(reply.published, 5000);
        rss.push(rss_kib());
    }
    println!("RSS after each 20 MB flood: {rss:?} KiB");
    // A leak would add about 20 MB a flood; allocator noise is a few MiB at most.
    let grown = rss[FLOODS as usize - 1].saturating_sub(rss[0]);
    assert!(grown < 8 * 1024, "memory grew {grown} KiB over {} more floods: {rss:?}", FLOODS - 1);

    let metrics = reqwest::get(&scrape).await.unwrap().text().await.unwrap();
    let held: f64 = metrics
        .lines()
        .find(|l| l.starts_with("slip_history_bytes{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no slip_history_bytes in {metrics}"));
    assert!(held > 0.0 && held <= max_bytes as f64, "history holds {held} bytes, bound {max_bytes}");
    let newest = grpc.history(history("flood-199", "", 0)).await.unwrap().into_inner();
    assert_eq!(newest.top_offset, 25 * FLOODS);
    assert_eq!(texts(&newest).last().map(|(o, _)| *o), Some(25 * FLOODS), "the newest is held");
    let oldest = grpc.history(history("flood-0", "", 0)).await.unwrap().into_inner();
    assert!(texts(&oldest).is_empty() && !oldest.complete, "the oldest went first");
}

/// Idempotency keys are bounded in bytes per node: 3,000 distinct 128-byte
/// keys over ten channels stay within `--idempotency-max-bytes` (the gauge
/// says so), the newest are still recognized, and a key forgotten early
/// gets a new offset (what docs/streams.md says it means).
#[tokio::test]
async fn idempotency_keys_are_bounded_in_bytes_per_node() {
    let backend = Backend::start(accept_all).await;
    let bound = 256 * 1024;
    let args = ["dev", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
    let bound_flag = bound.to_string();
    let extra = ["--target-url", &backend.url, "--jwt-secret", SECRET, "--idempotency-max-bytes", &bound_flag];
    let (_child, lines) = spawn_slip(&[&args[..], &extra[..]].concat(), &["Control API:", "Metrics:"]).await;
    let control = lines[0].split_whitespace().next().unwrap().to_owned();
    let mut grpc = grpc_to(&control).await;
    let key = |i: usize| format!("{i:0>128}");
    let mut first = Vec::new();
    for i in 0..3_000 {
        let reply = grpc.publish(publish(&format!("c{}", i % 10), "m", &key(i))).await.unwrap().into_inner();
        first.push(reply.offset);
    }
    let metrics = reqwest::get(&lines[1]).await.unwrap().text().await.unwrap();
    let gauge = |name: &str| -> f64 {
        metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap()
    };
    let (held, shed) = (gauge("slip_idempotency_key_bytes"), gauge("slip_idempotency_keys_shed_total"));
    assert!(held > 0.0 && held <= bound as f64, "{held} bytes of keys held; the bound is {bound}");
    assert!(shed > 2_000.0, "{shed} keys shed");
    let again = |i: usize| publish(&format!("c{}", i % 10), "m again", &key(i));
    let newest = grpc.publish(again(2_999)).await.unwrap().into_inner();
    assert_eq!(newest.offset, first[2_999], "a recent key is recognized");
    let oldest = grpc.publish(again(0)).await.unwrap().into_inner();
    assert!(oldest.offset > first[0], "a key forgotten early gets a new offset");
}
