//! forcemfa keeps the ForceMFA IAM group exact: every user without an MFA device in it, every
//! user with one out of it, exempt users untouched.
//!
//! The folders show how data flows: [`config`] -> [`reconcile`] (targets -> inventory, the reads
//! -> plan, pure -> apply, the writes -> report), on the SDK set-up of [`aws`]. A run returns its
//! report and nothing else; its callers act on it: the `reconcile` command ([`cli`]), the
//! service ([`service`]: a schedule, requests, the events queue through [`batch`]) and the Lambda
//! function ([`lambda`]) hand it to [`notify`] to tell people, then print, serve or answer it.
//! [`policy`] renders the IAM policies and bootstraps the group.

pub mod arn;
pub(crate) mod aws;
pub(crate) mod batch;
pub mod cli;
pub(crate) mod clock;
pub mod cloudtrail;
pub mod config;
pub(crate) mod environment;
pub(crate) mod files;
pub mod lambda;
pub(crate) mod notify;
pub mod policy;
pub(crate) mod reconcile;
pub(crate) mod service;
pub(crate) mod signals;
pub(crate) mod sync;
pub(crate) mod telemetry;
pub(crate) mod text;
pub mod user_name;
