//! Integration tests: the real binary against a real IAM API (moto_server) over HTTP.

mod accounts;
mod bad_input;
mod broken_answers;
mod daemon;
mod deploy;
mod fail_safe;
mod group_policy;
mod monitoring;
mod policies;
mod reconcile;
mod reliability;
mod support;
