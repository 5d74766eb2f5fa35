//! The scenarios, each measuring one thing on any [`crate::target::Target`].

pub mod admin_page;
pub mod dashboard;
pub mod failover;
pub mod fanout;
pub mod idle;
pub mod inbound;
pub mod sessions;
pub mod soak;
pub mod storm;
