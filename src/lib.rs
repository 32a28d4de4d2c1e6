//! forcemfa keeps the ForceMFA IAM group exact: every user without an MFA device in it, every
//! user with one out of it, exempt users untouched.
//!
//! The folders show how data flows: [`config`] -> [`reconcile`] (targets -> inventory, the reads
//! -> plan, pure -> apply, the writes -> report), on the SDK set-up of [`aws`]; [`service`] runs
//! it on a schedule and on request; [`policy`] renders the IAM policies and bootstraps the group.

pub mod arn;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod config;
pub mod environment;
pub mod policy;
pub mod reconcile;
pub mod service;
pub mod signals;
pub mod sync;
pub mod telemetry;
