//! The chat of the original README, end to end.

use crate::support::*;

#[tokio::test]
async fn chat_of_the_original_readme() {
    let backend = Backend::start(chat).await;
    let gateway = Gateway::start(&backend.url).await;

    let mut ann = Client::connect(&gateway).await;
    let mut first = ann.texts(2).await;
    first.sort();
    assert_eq!(first, ["New connection has joined!", "Welcome to the cool channel, be nice or get out"]);

    let mut bob = Client::connect(&gateway).await;
    let mut greeting = bob.texts(2).await;
    greeting.sort();
    assert_eq!(greeting, ["New connection has joined!", "Welcome to the cool channel, be nice or get out"]);
    // Ann hears Bob join.
    assert_eq!(ann.text().await, "New connection has joined!");

    let ann_id = nth_open(&backend, 0).await;
    ann.send("hello").await;
    let said = format!("{ann_id} says hello");
    assert_eq!(ann.text().await, said);
    assert_eq!(bob.text().await, said);

    ann.send("quit").await;
    assert_eq!(ann.close_code().await, 1000);
    assert_eq!(bob.text().await, "A Connection has left");
    assert_eq!(backend.bad_tokens(), 0);
}
