//! Integration tests: the real binary against a real IAM API (moto_server) over HTTP.
// The tests set resource limits and send signals to the processes they start.
#![allow(unsafe_code)]

mod accounts;
mod admin;
mod bad_input;
mod broken_answers;
mod bursts;
mod daemon;
mod deadline;
mod deploy;
mod events;
mod fail_safe;
mod files;
mod group_policy;
mod lambda;
mod monitoring;
mod notify;
mod notify_channels;
mod outcomes;
mod policies;
mod reconcile;
mod reliability;
mod report_schema;
mod rollout;
mod support;
