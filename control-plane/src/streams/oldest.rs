//! Streams by when the oldest thing each holds (a publication, an
//! idempotency key) came: one entry a stream, so the node-wide bounds (age,
//! bytes) find the oldest anywhere without a queue entry for every
//! publication or key, which would stay for the whole age bound after the
//! per-stream bounds had dropped what it names. Pure.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct Oldest(BTreeSet<(Instant, Arc<str>)>);

impl Oldest {
    /// `name`'s oldest was `before` and is `after` now (`None`: it holds none).
    pub fn moved(&mut self, name: &Arc<str>, before: Option<Instant>, after: Option<Instant>) {
        if before == after {
            return;
        }
        if let Some(at) = before {
            self.0.remove(&(at, name.clone()));
        }
        if let Some(at) = after {
            self.0.insert((at, name.clone()));
        }
    }

    /// When the oldest anywhere came.
    pub fn first(&self) -> Option<Instant> {
        self.0.first().map(|(at, _)| *at)
    }

    /// The stream holding the oldest anywhere, out of the index: put it back
    /// with [`Oldest::moved`] (`before` `None`) once its oldest went.
    pub fn pop_first(&mut self) -> Option<(Instant, Arc<str>)> {
        self.0.pop_first()
    }

    /// Streams indexed.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_entry_a_stream_ordered_by_its_oldest() {
        let t0 = Instant::now();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut index = Oldest::default();
        index.moved(&a, None, Some(t0 + Duration::from_secs(2)));
        index.moved(&b, None, Some(t0 + Duration::from_secs(1)));
        index.moved(&a, Some(t0 + Duration::from_secs(2)), Some(t0 + Duration::from_secs(3)));
        assert_eq!(index.len(), 2);
        assert_eq!(index.pop_first(), Some((t0 + Duration::from_secs(1), b.clone())));
        index.moved(&a, Some(t0 + Duration::from_secs(3)), None);
        assert_eq!((index.len(), index.first()), (0, None));
    }
}
