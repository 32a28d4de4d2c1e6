//! forcemfa keeps the ForceMFA IAM group exact: every user without an MFA device in it, every
//! user with one out of it, exempt users untouched.
//!
//! The folders show how data flows: [`config`] -> [`reconcile`] (targets -> inventory, the reads
//! -> plan, pure -> apply, the writes -> report), on the SDK set-up of [`aws`]; [`service`] runs
//! it on a schedule and on request, [`lambda`] as an AWS Lambda function; [`policy`] renders the
//! IAM policies and bootstraps the group.

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
