//! Integration tests: the real binary against a real IAM API (moto_server) over HTTP.

mod accounts;
mod admin;
mod bad_input;
mod daemon;
mod deploy;
mod fail_safe;
mod policies;
mod reconcile;
mod reliability;
mod support;
