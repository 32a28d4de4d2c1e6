//! forcemfa keeps the ForceMFA IAM group exact: every user without an MFA device in it, every
//! user with one out of it, exempt users untouched.
//!
//! Data flows one way: [`config`] -> [`inventory`] (read IAM) -> [`plan`] (pure) -> [`apply`]
//! (write IAM) -> [`report`], driven by [`reconcile`].

pub mod accounts;
pub mod admin;
pub mod answers;
pub mod apply;
pub mod arn;
pub mod audit;
pub mod aws;
pub mod bootstrap;
pub mod cleanup;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod environment;
pub mod inventory;
pub mod listener;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod reconcile;
pub mod report;
pub mod schedule;
pub mod signals;
pub mod sync;
pub mod telemetry;
