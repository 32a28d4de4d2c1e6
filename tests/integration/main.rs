//! Integration tests: the real binary against a real IAM API (moto_server) over HTTP.

mod bad_input;
mod fail_safe;
mod reconcile;
mod support;
