//! One reconciliation: read, plan, guard, apply (unless dry-run), report.
//!
//! The files follow the flow. [`reconciler`] opens what runs need; [`run`] covers every account
//! ([`targets`] says which, with their clients); [`account`] reconciles one: [`inventory`] reads
//! it, [`plan`] decides (pure), [`enforce`] applies the plan through [`apply`] (the only writes)
//! past the guard and the account's [`gate`], the [`recorder`] logging and auditing ([`audit`])
//! each change; [`report`] is what comes out, and [`notification`] the words it shares with the
//! notifier, which the callers run after it. [`targeted`] reconciles named users only, and
//! [`events`] routes IAM events to it. [`context`], [`stop`] and [`failure`] hold what the steps
//! share; [`devices`] remembers abandoned MFA devices.

pub mod account;
pub mod apply;
pub mod audit;
pub mod context;
pub mod devices;
pub mod enforce;
pub mod events;
pub mod failure;
pub mod gate;
pub mod impact;
pub mod inventory;
pub mod notification;
pub mod plan;
pub mod reconciler;
pub mod recorder;
pub mod report;
pub mod rollout;
pub mod run;
pub mod stop;
pub mod targeted;
pub mod targets;

pub use context::{RunOptions, Scope};
pub use reconciler::Reconciler;
