//! The writing half of a connection: drains its outbox with vectored writes,
//! and sends the grip keep-alive frame a WebSocket-over-HTTP backend asked for.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::Instant;

use crate::effect::KeepAlive;
use crate::frame;
use crate::outbox::Outbox;

/// Frames taken from the outbox per wakeup, at most.
const MAX_WRITE_BATCH: usize = 256;
/// Frames handed to one `writev` (the kernel takes up to 1024).
const MAX_IOVECS: usize = 64;

/// Writes what the outbox holds until a close is ordered; sends our close
/// frame if one is due, then shuts the socket's sending side.
pub(super) async fn run(mut write: OwnedWriteHalf, outbox: Arc<Outbox>) {
    // Grip keep-alive: when it is next due, measured from the last write (idle
    // mode) or the last keep-alive (interval mode).
    let (mut last_write, mut last_keep_alive) = (Instant::now(), Instant::now());
    loop {
        let batch = outbox.take(MAX_WRITE_BATCH);
        let written = batch.frames.len();
        if written > 0 {
            if write_frames(&mut write, &batch.frames).await.is_err() {
                outbox.abort("write failed");
                return;
            }
            slip_metrics::metrics().frames_out.inc_by(written as u64);
            last_write = Instant::now();
        }
        let keep_alive = batch.keep_alive;
        outbox.recycle(batch.frames);
        if let Some(close) = batch.close {
            if let Some(code) = close.code {
                let _ = write.write_all(&frame::close(code, &close.reason)).await;
            }
            let _ = write.shutdown().await;
            return;
        }
        if written == MAX_WRITE_BATCH {
            continue;
        }
        let Some(keep_alive) = keep_alive else {
            outbox.ready().await;
            continue;
        };
        tokio::select! {
            _ = outbox.ready() => {}
            _ = tokio::time::sleep_until(keep_alive_at(&keep_alive, last_write, last_keep_alive)) => {
                if write.write_all(&keep_alive.frame).await.is_err() {
                    outbox.abort("write failed");
                    return;
                }
                last_keep_alive = Instant::now();
            }
        }
    }
}

/// When the keep-alive frame is next due.
fn keep_alive_at(keep_alive: &KeepAlive, last_write: Instant, last_keep_alive: Instant) -> Instant {
    if keep_alive.interval {
        last_keep_alive + keep_alive.every
    } else {
        last_write.max(last_keep_alive) + keep_alive.every
    }
}

/// Writes frames with as few syscalls as the kernel allows: one `writev` of
/// up to [`MAX_IOVECS`] frames. The slices are built on the stack inside the
/// poll, so neither a write nor a waiting writer holds memory for them.
async fn write_frames(write: &mut OwnedWriteHalf, frames: &VecDeque<Bytes>) -> std::io::Result<()> {
    if let (Some(only), 1) = (frames.front(), frames.len()) {
        return write.write_all(only).await;
    }
    let (mut index, mut offset) = (0, 0);
    while index < frames.len() {
        let mut written = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n = 0;
            for (slot, frame) in slices.iter_mut().zip(frames.range(index..)) {
                *slot = IoSlice::new(if n == 0 { &frame[offset..] } else { frame });
                n += 1;
            }
            Pin::new(&mut *write).poll_write_vectored(cx, &slices[..n])
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 && index < frames.len() {
            let rest = frames[index].len() - offset;
            if written >= rest {
                written -= rest;
                index += 1;
                offset = 0;
            } else {
                offset += written;
                written = 0;
            }
        }
    }
    Ok(())
}
