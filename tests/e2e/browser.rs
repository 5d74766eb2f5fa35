//! The demo a newcomer sees first, in a real browser: headless Chromium
//! driven through chromedriver opens the page twice, joins as two people,
//! and a message sent in one shows up in the other.

use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, ClientBuilder, Locator};
use serde_json::json;

use crate::support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub(crate) async fn browser(driver: &str, profile: &std::path::Path) -> Browser {
    let mut caps = serde_json::Map::new();
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=900,700",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    caps.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": args }));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a Chromium session through chromedriver")
}

/// chromedriver on a free port, once it answers: its process and URL.
pub(crate) async fn chromedriver() -> (tokio::process::Child, String) {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: install Debian's chromium and chromium-driver (scripts/test.sh does)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let process = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let driver = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + PATIENCE;
    while reqwest::get(format!("{driver}/status")).await.is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (process, driver)
}

async fn join(browser: &Browser, page: &str, name: &str) {
    browser.goto(page).await.unwrap();
    browser.find(Locator::Id("name")).await.unwrap().send_keys(name).await.unwrap();
    browser.find(Locator::Css("#join button")).await.unwrap().click().await.unwrap();
    wait_for_text(browser, "status", &format!("connected as {name}")).await;
}

async fn wait_for_text(browser: &Browser, id: &str, want: &str) {
    wait_for_text_within(browser, id, want, PATIENCE).await;
}

async fn wait_for_text_within(browser: &Browser, id: &str, want: &str, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let text = browser.find(Locator::Id(id)).await.unwrap().text().await.unwrap();
        if text.contains(want) {
            return;
        }
        assert!(Instant::now() < deadline, "#{id} never showed {want:?}; it shows {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_demo_chats_between_two_browsers() {
    // `slip dev` with no target URL: the built-in demo.
    let (_gateway, lines) =
        spawn_slip(&["dev", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"], &["Demo chat:"]).await;
    let page = lines[0].split_whitespace().next().unwrap().to_owned();

    let (_driver, driver) = chromedriver().await;

    let profiles = std::env::temp_dir().join(format!("slip-browser-{}", std::process::id()));
    let ann = browser(&driver, &profiles.join("ann")).await;
    let bob = browser(&driver, &profiles.join("bob")).await;
    join(&ann, &page, "Ann").await;
    join(&bob, &page, "Bob").await;
    wait_for_text(&ann, "log", "Bob joined").await;
    // Who is online is the room's presence: Bob's page began with Ann there.
    wait_for_text(&ann, "online", "online (2): Ann, Bob").await;
    wait_for_text(&bob, "online", "online (2): Ann, Bob").await;

    ann.find(Locator::Id("text")).await.unwrap().send_keys("hello from Ann").await.unwrap();
    ann.find(Locator::Css("#say button")).await.unwrap().click().await.unwrap();
    wait_for_text(&bob, "log", "hello from Ann").await;
    wait_for_text(&ann, "log", "hello from Ann").await;

    // What the README shows: Bob's window, written under target/.
    let png = bob.screenshot().await.unwrap();
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo.png");
    std::fs::write(&out, png).unwrap();

    ann.close().await.unwrap();
    wait_for_text(&bob, "log", "Ann left").await;
    wait_for_text(&bob, "online", "online (1): Bob").await;
    bob.close().await.unwrap();
    let _ = std::fs::remove_dir_all(profiles);
}

/// `slip dev` keeps everything in memory, so a restart ends every session
/// (docs/decisions.md). The page lives through it: it reconnects by itself,
/// a line typed while the gateway was away goes out once it is back, and a
/// page that comes back after that line was said still gets it (its client
/// names where it stood; the channel's history since the restart fills in).
#[tokio::test]
async fn the_demo_page_loses_no_line_when_the_gateway_restarts() {
    let (listen, control) =
        (format!("127.0.0.1:{}", crate::support::free_port()), format!("127.0.0.1:{}", crate::support::free_port()));
    let args = ["dev", "--listen", listen.as_str(), "--control-listen", control.as_str()];
    let (mut gateway, lines) = spawn_slip(&args, &["Demo chat:"]).await;
    let page = lines[0].split_whitespace().next().unwrap().to_owned();
    let (_driver, driver) = chromedriver().await;
    let profiles = std::env::temp_dir().join(format!("slip-restart-{}", std::process::id()));
    let ann = browser(&driver, &profiles.join("ann")).await;
    let bob = browser(&driver, &profiles.join("bob")).await;
    join(&ann, &page, "Ann").await;
    join(&bob, &page, "Bob").await;
    say(&ann, "before the restart").await;
    wait_for_text(&bob, "log", "before the restart").await;

    gateway.kill().await.unwrap();
    wait_for_text(&bob, "status", "reconnecting").await;
    say(&bob, "said while it was away").await;
    let (_gateway, _) = spawn_slip(&args, &["Demo chat:"]).await;

    // Reconnects back off (at most 30 s between tries), hence the patience.
    for (who, page) in [("Ann", &ann), ("Bob", &bob)] {
        wait_for_text_within(page, "log", "said while it was away", Duration::from_secs(60)).await;
        wait_for_text(page, "status", &format!("connected as {who}")).await;
    }
    let log = ann.find(Locator::Id("log")).await.unwrap().text().await.unwrap();
    assert_eq!(log.matches("said while it was away").count(), 1, "{log}");
    assert!(log.contains("before the restart"), "{log}");
    ann.close().await.unwrap();
    bob.close().await.unwrap();
    let _ = std::fs::remove_dir_all(profiles);
}

async fn say(browser: &Browser, text: &str) {
    browser.find(Locator::Id("text")).await.unwrap().send_keys(text).await.unwrap();
    browser.find(Locator::Css("#say button")).await.unwrap().click().await.unwrap();
}
