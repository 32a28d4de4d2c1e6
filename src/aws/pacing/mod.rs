//! Client-side pacing of IAM calls: one token bucket per account, shared by every IAM call made in
//! that account (reads, writes and the SDK's retries), whose rate is found from IAM's answers.
//!
//! IAM throttles each account with token buckets whose sizes AWS does not publish, which cannot be
//! raised, and which every caller of the account shares. Sending faster than IAM's bucket refills
//! gains nothing (the excess is answered `Throttling` and sent again later) and slows the other
//! callers of the account; sending slower wastes the run's time. So forcemfa sends at the rate IAM
//! allows, and finds that rate from IAM's own answers:
//!
//! - IAM answers `Throttling` only when its bucket is empty. Between two such moments, the calls
//!   it accepted are exactly those its bucket refilled for, so their count over the time between
//!   the two is IAM's rate. That is the rate forcemfa keeps, a few percent below.
//! - Before the first throttle nothing is known, and the calls under way when a bucket of
//!   unknown size first runs dry are all throttled. So until then the pacing bounds how many calls
//!   are under way rather than how fast they go: fewer than [`pace::START_WINDOW`] plus the calls
//!   IAM has accepted divided by [`pace::WINDOW_GROWTH`]. A small bucket runs dry while the
//!   window is small; an endpoint that never throttles soon has every call the run can make under
//!   way, within `aws.max_requests_per_second` and `aws.burst`.
//! - The first throttle sets the rate to a quarter of the calls sent in the last second: IAM
//!   allows less than that, by an unknown share. The rate doubles every second that calls wait
//!   for it until the next throttle measures it. A throttle too soon after another to measure
//!   anything halves the rate, and still bounds it: IAM cannot have refilled more than it
//!   accepted in between, plus one.
//! - Once measured, the rate grows quickly back to the measured rate after a cut, and only creeps
//!   above it (1% a second while calls wait), so that a limit raised or freed by other callers is
//!   found again; it is measured anew at every throttle. A burst after a quiet spell that overruns
//!   IAM's drops what is left of it, and leaves the measured rate as it is.
//! - A throttle of a call sent before the rate was last lowered says nothing new and changes
//!   nothing: a few throttles never drag the rate down further than one measurement says.
//!
//! The three layers are three files. `pace` is that logic on an explicit clock, without I/O
//! ([`pace::Pace`], over the [`pace::CallBucket`] of calls this side may send); `pacer` shares it
//! between the tasks of an account ([`Pacer`]); `sdk` fits it into the SDK: [`PacedHttpClient`]
//! makes every request of an IAM client wait for its turn, and [`PaceFeedback`] tells the pacer how
//! IAM answered each one. A request that ends without an answer (a broken connection, a timeout)
//! frees its place in the window when it is dropped. `simulation` (tests only) runs the pace
//! against a simulated IAM, the grid its constants were chosen on.

mod pace;
mod pacer;
mod sdk;
#[cfg(test)]
mod simulation;

pub use pacer::Pacer;
pub use sdk::{Dispatch, PaceFeedback, PacedHttpClient};
