//! Where the consensus keeps its log: raft-rs's `MemStorage` for the
//! entries, hard state and configuration, plus what a snapshot must carry
//! for a node that joins late (the view, as of the last applied decision),
//! and, with `SLIP_DATA_DIR`, a file that holds all of it so a restarted
//! node is the same voter and never votes twice in one term.
//!
//! The file is rewritten whole (write, fsync, rename) whenever the hard
//! state, the configuration or the log changed: the log holds view
//! decisions and elections only, and is compacted past
//! [`MAX_LOG_ENTRIES`], so it stays small.

use std::path::{Path, PathBuf};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};
use slip_proto::link_pb::ConsensusState;

/// Entries kept in the log before it is compacted into a snapshot.
pub const MAX_LOG_ENTRIES: u64 = 1024;
/// The file under `SLIP_DATA_DIR` that holds the consensus state.
pub const STATE_FILE: &str = "consensus.pb";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("{0} is not consensus state: {1}")]
    Corrupt(PathBuf, String),
}

/// The log and state of this node's consensus, for raft-rs.
#[derive(Clone)]
pub struct Store {
    mem: MemStorage,
    /// The last applied index, its term, and the view then (encoded): what
    /// a snapshot sent to a lagging node carries.
    applied: std::sync::Arc<parking_lot::Mutex<(u64, u64, Vec<u8>)>>,
}

impl Store {
    /// A store with nothing in it: a node that has not formed or joined a cluster.
    pub fn empty() -> Self {
        Self { mem: MemStorage::new(), applied: Default::default() }
    }

    /// A cluster's first state: `voters` at index 1, the view `view` (encoded).
    pub fn formed(voters: Vec<u64>, view: Vec<u8>) -> Self {
        let store = Self::empty();
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = 1;
        meta.term = 1;
        meta.set_conf_state(ConfState::from((voters, Vec::<u64>::new())));
        snapshot.data = view.clone().into();
        // A fresh store takes any snapshot.
        let _ = store.mem.wl().apply_snapshot(snapshot);
        *store.applied.lock() = (1, 1, view);
        store
    }

    /// The state saved in `dir`, if there is any: the raft id and a store holding it.
    pub fn load(dir: &Path) -> Result<Option<(u64, Self, Vec<u8>)>, StoreError> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::Read(path, e)),
        };
        let corrupt = |e: String| StoreError::Corrupt(path.clone(), e);
        let state = ConsensusState::decode(bytes.as_slice()).map_err(|e| corrupt(e.to_string()))?;
        let hard_state = HardState::parse_from_bytes(&state.hard_state).map_err(|e| corrupt(e.to_string()))?;
        let conf_state = ConfState::parse_from_bytes(&state.conf_state).map_err(|e| corrupt(e.to_string()))?;
        let snapshot = Snapshot::parse_from_bytes(&state.snapshot).map_err(|e| corrupt(e.to_string()))?;
        let entries = state
            .entries
            .iter()
            .map(|e| Entry::parse_from_bytes(e).map_err(|e| corrupt(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let store = Self::empty();
        let view = snapshot.data.to_vec();
        let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
        {
            let mut core = store.mem.wl();
            if index > 0 {
                core.apply_snapshot(snapshot).map_err(|e| corrupt(e.to_string()))?;
            }
            if let Some(first) = entries.first()
                && first.index != index + 1
            {
                return Err(corrupt(format!("log starts at {} after a snapshot at {index}", first.index)));
            }
            core.append(&entries).map_err(|e| corrupt(e.to_string()))?;
            core.set_hardstate(hard_state);
            core.set_conf_state(conf_state);
        }
        // Applied again from the snapshot on: the view it carries is where that starts.
        *store.applied.lock() = (index, term, view.clone());
        Ok(Some((state.raft_id, store, view)))
    }

    /// Writes everything to `dir` (created if need be), replacing what was there.
    pub fn save(&self, dir: &Path, raft_id: u64) -> Result<(), StoreError> {
        let path = dir.join(STATE_FILE);
        let write = |e| StoreError::Write(path.clone(), e);
        let state = {
            let raft_state = self.mem.initial_state().map_err(|e| write(std::io::Error::other(e.to_string())))?;
            let first = self.mem.first_index().unwrap_or(1);
            let last = self.mem.last_index().unwrap_or(0);
            let entries = if last >= first {
                self.mem
                    .entries(first, last + 1, None, GetEntriesContext::empty(false))
                    .map_err(|e| write(std::io::Error::other(e.to_string())))?
            } else {
                Vec::new()
            };
            ConsensusState {
                raft_id,
                hard_state: bytes(&raft_state.hard_state),
                conf_state: bytes(&raft_state.conf_state),
                snapshot: bytes(&self.base_snapshot()),
                entries: entries.iter().map(bytes).collect(),
            }
        };
        std::fs::create_dir_all(dir).map_err(write)?;
        let temp = dir.join(format!("{STATE_FILE}.tmp"));
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&temp).map_err(write)?;
            file.write_all(&state.encode_to_vec()).map_err(write)?;
            file.sync_all().map_err(write)?;
        }
        std::fs::rename(&temp, &path).map_err(write)?;
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The snapshot the log starts after (its index 0 when there is none).
    fn base_snapshot(&self) -> Snapshot {
        let first = self.mem.first_index().unwrap_or(1);
        let index = first.saturating_sub(1);
        let applied = self.applied.lock();
        let mut snapshot = Snapshot::default();
        if index == 0 {
            return snapshot;
        }
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = self.mem.term(index).unwrap_or(applied.1);
        meta.set_conf_state(self.conf_state());
        // The view as of the snapshot: the base is only ever moved to the applied index.
        snapshot.data = applied.2.clone().into();
        snapshot
    }

    /// Appends entries raft-rs handed over (replacing any they conflict with).
    pub fn append(&self, entries: &[Entry]) -> raft::Result<()> {
        self.mem.wl().append(entries)
    }

    pub fn set_hard_state(&self, hs: HardState) {
        self.mem.wl().set_hardstate(hs);
    }

    pub fn set_commit(&self, commit: u64) {
        self.mem.wl().mut_hard_state().set_commit(commit);
    }

    pub fn set_conf_state(&self, cs: ConfState) {
        self.mem.wl().set_conf_state(cs);
    }

    /// A snapshot from the leader: the log restarts after it.
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> raft::Result<()> {
        let meta = snapshot.get_metadata();
        let applied = (meta.index, meta.term, snapshot.data.to_vec());
        self.mem.wl().apply_snapshot(snapshot)?;
        *self.applied.lock() = applied;
        Ok(())
    }

    /// Decisions up to `index` (of `term`) are applied; the view is now `view`.
    /// Past [`MAX_LOG_ENTRIES`], the log before it is folded into a snapshot.
    pub fn applied(&self, index: u64, term: u64, view: Vec<u8>) {
        *self.applied.lock() = (index, term, view);
        let first = self.mem.first_index().unwrap_or(1);
        if index > first + MAX_LOG_ENTRIES {
            self.compact_to(index);
        }
    }

    /// Folds the log up to `index` (applied) into a snapshot.
    fn compact_to(&self, index: u64) {
        let last = self.mem.last_index().unwrap_or(0);
        let rest = if last > index {
            self.mem.entries(index + 1, last + 1, None, GetEntriesContext::empty(false)).unwrap_or_default()
        } else {
            Vec::new()
        };
        let RaftState { hard_state, conf_state } = match self.mem.initial_state() {
            Ok(state) => state,
            Err(_) => return,
        };
        let mut snapshot = Snapshot::default();
        {
            let applied = self.applied.lock();
            let meta = snapshot.mut_metadata();
            meta.index = index;
            meta.term = applied.1;
            meta.set_conf_state(conf_state.clone());
            snapshot.data = applied.2.clone().into();
        }
        let mut core = self.mem.wl();
        if core.apply_snapshot(snapshot).is_err() {
            return;
        }
        let _ = core.append(&rest);
        core.set_hardstate(hard_state);
        core.set_conf_state(conf_state);
    }

    /// The voters now.
    pub fn conf_state(&self) -> ConfState {
        self.mem.initial_state().map(|s| s.conf_state).unwrap_or_default()
    }

    /// The first index the log still holds.
    pub fn first_index(&self) -> u64 {
        self.mem.first_index().unwrap_or(1)
    }
}

fn bytes(message: &impl protobuf::Message) -> bytes::Bytes {
    message.write_to_bytes().unwrap_or_default().into()
}

impl Storage for Store {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    /// The view as of the last applied decision, for a node too far behind
    /// for the log (it was compacted, or it joined after the cluster formed).
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let (index, term, view) = self.applied.lock().clone();
        if index < request_index {
            return Err(raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable));
        }
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state());
        snapshot.data = view.into();
        Ok(snapshot)
    }
}
