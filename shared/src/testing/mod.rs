//! Test support, in one place and compiled only for tests (the `test-util` feature): the
//! in-memory store, a mailer that keeps its mail, a clock tests move, a DynamoDB call counter,
//! the fault-injecting HTTP client, and request builders and sign-in helpers for handler tests.

mod calls;
mod clock;
pub mod faults;
mod mailer;
mod memory;
mod requests;

pub use calls::{CallCounter, expected_calls};
pub use clock::ManualClock;
pub use mailer::MemoryMailer;
pub use memory::MemoryStore;
pub use requests::*;
