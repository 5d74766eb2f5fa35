//! The in-memory link `slip dev` uses between its edge and its control plane:
//! a bounded queue per direction and a task that hands frames to the handler,
//! so the routing code runs exactly as it does over QUIC.

use std::sync::Arc;

use slip_proto::ids::NodeId;
use slip_proto::link_pb::Frame;
use tokio::sync::mpsc;

use crate::{FrameHandler, LINK_QUEUE_FRAMES, Link, LinkError};

/// Frames handed to the handler per wakeup of the delivering task.
const DELIVERY_BATCH: usize = 256;

pub struct MemoryLink {
    peer: NodeId,
    queue: mpsc::Sender<Frame>,
}

impl Link for MemoryLink {
    fn peer(&self) -> &NodeId {
        &self.peer
    }

    fn send(&self, frame: Frame) -> Result<(), LinkError> {
        self.queue.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LinkError::Full(self.peer.to_string()),
            mpsc::error::TrySendError::Closed(_) => LinkError::Down(self.peer.to_string()),
        })
    }
}

/// A link from node `from` to node `to`, delivering into `to`'s handler.
/// Must be called inside a tokio runtime; the delivering task ends when the
/// link is dropped.
pub fn link(from: NodeId, to: NodeId, handler: Arc<dyn FrameHandler>) -> Arc<MemoryLink> {
    let (queue, mut frames) = mpsc::channel::<Frame>(LINK_QUEUE_FRAMES);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(DELIVERY_BATCH);
        while frames.recv_many(&mut batch, DELIVERY_BATCH).await > 0 {
            for frame in batch.drain(..) {
                handler.on_frame(&from, frame);
            }
        }
    });
    Arc::new(MemoryLink { peer: to, queue })
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
}
