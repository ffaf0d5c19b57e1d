//! The integration tests, one binary: against DynamoDB Local and the local SES endpoint that
//! `make test` starts (it sets the environment). A module per feature, with the shared helpers
//! in `common`. `make test` runs `faults` on its own, after the others: its SDK timeouts are
//! short, and must not share the machine with the other modules' hashing.

mod common;
mod dynamo;
mod faults;
mod lifecycle;
mod mfa;
mod sessions;
