//! The in-memory link `slip dev` uses between its edge and its control plane:
//! a bounded queue per direction and a task that hands frames to the handler,
//! so the routing code runs exactly as it does over QUIC.

use std::sync::Arc;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::Frame;
use tokio::sync::mpsc;

use prost::Message;

use crate::{Budget, FrameHandler, LINK_QUEUE_FRAMES, Link, LinkError};

/// Frames handed to the handler per wakeup of the delivering task.
const DELIVERY_BATCH: usize = 256;

/// A link within one process (`slip dev`, tests): frames go through a bounded queue to the peer's handler, as over QUIC.
pub struct MemoryLink {
    peer: NodeId,
    /// Frames with their encoded size, which the budget holds until delivery.
    queue: mpsc::Sender<(Frame, usize)>,
    budget: Budget,
}

impl Link for MemoryLink {
    fn peer(&self) -> &NodeId {
        &self.peer
    }

    fn send(&self, frame: Frame) -> Result<(), LinkError> {
        let size = frame.encoded_len();
        if !self.budget.take(size) {
            return Err(LinkError::Full(self.peer.to_string()));
        }
        self.queue.try_send((frame, size)).map_err(|e| {
            self.budget.give(size);
            match e {
                mpsc::error::TrySendError::Full(_) => LinkError::Full(self.peer.to_string()),
                mpsc::error::TrySendError::Closed(_) => LinkError::Down(self.peer.to_string()),
            }
        })
    }
}

/// A link from node `from` to node `to`, delivering into `to`'s handler.
/// Must be called inside a tokio runtime; the delivering task ends when the
/// link is dropped.
pub fn link(from: NodeId, to: NodeId, handler: Arc<dyn FrameHandler>) -> Arc<MemoryLink> {
    link_with_budget(from, to, handler, Budget::default())
}

fn link_with_budget(from: NodeId, to: NodeId, handler: Arc<dyn FrameHandler>, budget: Budget) -> Arc<MemoryLink> {
    let (queue, mut frames) = mpsc::channel::<(Frame, usize)>(LINK_QUEUE_FRAMES);
    let delivered = budget.clone();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(DELIVERY_BATCH);
        while frames.recv_many(&mut batch, DELIVERY_BATCH).await > 0 {
            for (frame, size) in batch.drain(..) {
                delivered.give(size);
                handler.on_frame(&from, frame);
            }
        }
    });
    Arc::new(MemoryLink { peer: to, queue, budget })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use slip_proto::link_pb::{Interest, frame::Kind};

    #[derive(Default)]
    struct Record(Mutex<Vec<(String, String)>>);

    impl FrameHandler for Record {
        fn on_frame(&self, from: &NodeId, frame: Frame) {
            if let Some(Kind::Interest(i)) = frame.kind {
                self.0.lock().push((from.to_string(), i.channel));
            }
        }
    }

    #[tokio::test]
    async fn delivers_in_order_with_sender_identity() {
        let record = Arc::new(Record::default());
        let a = NodeId::parse("a").unwrap();
        let b = NodeId::parse("b").unwrap();
        let link = link(a, b.clone(), record.clone());
        assert_eq!(link.peer(), &b);
        for i in 0..1000 {
            let frame = Frame {
                kind: Some(Kind::Interest(Interest { channel: i.to_string(), present: true, ..Default::default() })),
            };
            link.send(frame).unwrap();
        }
        for _ in 0..100 {
            if record.0.lock().len() == 1000 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let got = record.0.lock().clone();
        assert_eq!(got.len(), 1000);
        assert!(got.iter().enumerate().all(|(i, (from, ch))| from == "a" && ch == &i.to_string()));
    }

    /// Holds every frame until told to let go: a peer that does not read.
    struct Stuck(std::sync::Mutex<()>, std::sync::atomic::AtomicUsize);

    impl FrameHandler for Stuck {
        fn on_frame(&self, _: &NodeId, _: Frame) {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(self.0.lock());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    // On purpose: the held lock is the peer that does not read.
    #[allow(clippy::await_holding_lock)]
    async fn a_peer_that_does_not_read_costs_at_most_the_byte_budget() {
        let stuck = Arc::new(Stuck(std::sync::Mutex::new(()), Default::default()));
        let hold = stuck.0.lock().unwrap();
        let (a, b) = (NodeId::parse("a").unwrap(), NodeId::parse("b").unwrap());
        let link = link_with_budget(a, b, stuck.clone(), Budget::new(1024 * 1024));
        // 100 KiB publishes: far fewer than LINK_QUEUE_FRAMES fit in 1 MiB.
        let big = || Frame {
            kind: Some(Kind::Publish(slip_proto::link_pb::Publish {
                channel: "c".into(),
                event: Some(slip_proto::link_pb::ChannelEvent {
                    body: Some(slip_proto::link_pb::channel_event::Body::Binary(vec![0u8; 100 * 1024].into())),
                }),
                ..Default::default()
            })),
        };
        let mut sent = 0;
        let mut fill = || {
            while link.send(big()).is_ok() {
                sent += 1;
                assert!(sent < 100, "the budget never refused");
            }
        };
        fill();
        // Once the handler holds the first frame (its bytes given back), the
        // delivering task is stuck: fill what that freed, and nothing more moves.
        for _ in 0..200 {
            if stuck.1.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        fill();
        assert!(matches!(link.send(big()), Err(LinkError::Full(_))));
        assert!(link.budget.queued() <= 1024 * 1024);
        // (One frame may be in the handler's hands, out of the queue.)
        assert!((9..=11).contains(&sent), "{sent} frames of 100 KiB within 1 MiB");
        drop(hold);
        for _ in 0..200 {
            if link.budget.queued() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(link.budget.queued(), 0, "delivered frames give their bytes back");
        assert!(link.send(big()).is_ok());
    }
}
