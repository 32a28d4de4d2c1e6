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
//!   are under way rather than how fast they go: fewer than [`START_WINDOW`] plus the calls IAM
//!   has accepted divided by [`WINDOW_GROWTH`]. A small bucket runs dry while the window is small; an
//!   endpoint that never throttles soon has every call the run can make under way, within
//!   `aws.max_requests_per_second` and `aws.burst`.
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
//! [`Pace`] is that logic on an explicit clock, without I/O; [`Pacer`] shares it between the tasks
//! of an account; [`PacedHttpClient`] makes every request of an IAM client wait for its turn, and
//! [`PaceFeedback`] tells the pacer how IAM answered each one. A request that ends without an
//! answer (a broken connection, a timeout) frees its place in the window when it is dropped.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aws_smithy_runtime::client::retries::classifiers::run_classifiers_on_ctx;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::retries::classifiers::{RetryAction, RetryReason};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::retry::ErrorKind;
use hyper::body::{Body, Bytes, Frame, SizeHint};

use crate::sync::lock;

/// Before IAM has throttled anything, a call goes only while fewer calls are under way than this
/// ...
pub const START_WINDOW: f64 = 2.0;
/// ... plus the calls IAM has accepted divided by this (two at first, three from the first
/// answer on, four from the 16th, and so on). The calls under way when a bucket
/// of unknown size first runs dry are all throttled, so the window is small while few calls have
/// been accepted (a small bucket runs dry early) and opens as IAM keeps accepting them.
/// Measured with `scripts/bench` (see the README's Performance section).
pub const WINDOW_GROWTH: f64 = 15.0;
/// The burst is spent at no more than this many times the rate.
pub const BURST_PACE: f64 = 2.0;
/// The rate is never lowered below this many calls a second.
pub const MIN_RATE: f64 = 1.0;
/// At the first throttle, the rate becomes this share of the calls sent in the last second ...
const FIRST_CUT: f64 = 0.25;
/// ... and at a later throttle that cannot be measured yet, it is multiplied by this.
const CUT: f64 = 0.5;
/// The rate kept is this much below the one measured, so that IAM's bucket is not run dry again
/// at once and other callers of the account keep a little room.
const MARGIN: f64 = 0.05;
/// A measurement needs at least this long between two throttles ...
const MIN_SPAN: Duration = Duration::from_secs(1);
/// ... and at least this many calls accepted in between: a count of a few is too coarse.
const MIN_ACCEPTED: u64 = 8;
/// Growth while calls wait for the rate, per second of waiting: doubling up to the rate last
/// measured, 1% above it.
const GROWTH_QUICK: f64 = std::f64::consts::LN_2;
const GROWTH_SLOW: f64 = 0.01;
/// No call for this long, and IAM's bucket has had time to refill.
const QUIET: Duration = Duration::from_secs(1);
/// The span over which the rate calls were sent at is counted.
const RECENT: Duration = Duration::from_secs(1);

/// A token bucket on an explicit clock (time since an arbitrary origin).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    /// A second bucket, two tokens deep, refilled at [`BURST_PACE`] times the rate: it spaces the
    /// burst out instead of letting it all go at once.
    pace_tokens: f64,
    at: Duration,
}

const PACE_DEPTH: f64 = 2.0;

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, capacity: f64, now: Duration) -> TokenBucket {
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            pace_tokens: PACE_DEPTH,
            at: now,
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn tokens(&self) -> f64 {
        self.tokens
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.pace_tokens = (self.pace_tokens + elapsed * self.rate * BURST_PACE).min(PACE_DEPTH);
    }

    /// How long until a call may go; zero when one may go now.
    pub fn wait(&mut self, now: Duration) -> Duration {
        self.refill(now);
        let for_token = (1.0 - self.tokens).max(0.0) / self.rate;
        let for_pace = (1.0 - self.pace_tokens).max(0.0) / (self.rate * BURST_PACE);
        Duration::from_secs_f64(for_token.max(for_pace))
    }

    /// Takes a token when one is there; otherwise says how long until one is.
    pub fn take(&mut self, now: Duration) -> Result<(), Duration> {
        let wait = self.wait(now);
        if wait > Duration::ZERO {
            return Err(wait);
        }
        self.tokens -= 1.0;
        self.pace_tokens -= 1.0;
        Ok(())
    }

    /// Refills at `rate` from `now` on.
    pub fn set_rate(&mut self, rate: f64, now: Duration) {
        self.refill(now);
        self.rate = rate;
    }

    /// Drops whatever burst is left: after a throttle there is none at the other end either.
    pub fn empty(&mut self, now: Duration) {
        self.refill(now);
        self.tokens = self.tokens.min(0.0);
    }
}

/// How IAM answered one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// IAM took the call, whatever it answered: it cost a token of its bucket.
    Accepted,
    /// IAM answered that its bucket is empty.
    Throttled,
}

/// What is known of one attempt that came back with an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The SDK's retry classifiers call it a throttling error.
    pub throttled: bool,
    /// The answer bears IAM's request id ([`IAM_REQUEST_ID`]): IAM gave it.
    pub from_iam: bool,
}

/// The header with which IAM stamps every answer it gives, errors included.
pub const IAM_REQUEST_ID: &str = "x-amzn-requestid";

/// How an attempt's answer counts against IAM's bucket, if it says anything of it. IAM decides
/// whether to throttle a call as it comes in, so any other answer IAM gave (a result, an error
/// such as NoSuchEntity, a server error, a body cut short) means it took the call in and spent a
/// token on it. An answer IAM did not give (a proxy's error page, a load balancer's) is not known
/// to have reached its bucket: counting it as accepted would open the window and overstate the
/// rate measured.
pub fn answer_of(attempt: Attempt) -> Option<Answer> {
    if attempt.throttled {
        Some(Answer::Throttled)
    } else if attempt.from_iam {
        Some(Answer::Accepted)
    } else {
        None
    }
}

/// Which rate a call was sent under: a throttle of a call sent before the rate was last lowered
/// is not held against the lower rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
}

/// Why a call cannot go yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Its token is this far off.
    For(Duration),
    /// As many calls are under way as IAM may be trusted with: one of them must be answered first.
    Answer,
}

/// Finds IAM's rate from the answers to the calls it paces (see the module's documentation).
#[derive(Debug, Clone)]
pub struct Pace {
    bucket: TokenBucket,
    max_rate: f64,
    /// IAM's rate as last measured between two throttles.
    found: Option<f64>,
    /// When IAM's bucket was last seen empty, and how many calls it had accepted by then.
    empty_at: Option<(Duration, u64)>,
    accepted: u64,
    throttled: u64,
    /// Raised whenever the rate is lowered or what is left of a burst is dropped.
    generation: u64,
    /// Since when a call has been waiting for a token.
    waiting_since: Option<Duration>,
    /// When the last call was let go.
    last_sent: Option<Duration>,
    /// The most IAM's rate can be, from throttles too close to measure it: before a measurement,
    /// growth stops there.
    bound: Option<f64>,
    /// Calls let go and not answered yet.
    in_flight: u64,
    /// When the calls of the last [`RECENT`] were let go, until IAM first throttles.
    recent: VecDeque<Duration>,
}

impl Pace {
    /// At most `max_rate` calls a second, with a full burst of `burst` calls; until IAM first
    /// throttles, no more calls under way than [`START_WINDOW`] and [`WINDOW_GROWTH`] allow.
    pub fn new(max_rate: f64, burst: f64, now: Duration) -> Pace {
        Pace {
            bucket: TokenBucket::new(max_rate, burst.max(1.0), now),
            max_rate,
            found: None,
            empty_at: None,
            accepted: 0,
            throttled: 0,
            generation: 0,
            waiting_since: None,
            last_sent: None,
            bound: None,
            in_flight: 0,
            recent: VecDeque::new(),
        }
    }

    /// Calls a second.
    pub fn rate(&self) -> f64 {
        self.bucket.rate()
    }

    /// IAM's rate as last measured (rather than assumed), if it has been.
    #[cfg(test)]
    fn found(&self) -> Option<f64> {
        self.found
    }

    /// Answers IAM accepted and throttled so far.
    #[cfg(test)]
    fn counts(&self) -> (u64, u64) {
        (self.accepted, self.throttled)
    }

    /// A pace just after IAM's first throttle, at `now`, left its rate at `rate`.
    #[cfg(test)]
    fn throttled_at(rate: f64, max_rate: f64, burst: f64, now: Duration) -> Pace {
        let mut pace = Pace::new(max_rate, burst, now);
        pace.bucket = TokenBucket::new(rate, burst, now);
        pace.bucket.empty(now);
        pace.throttled = 1;
        pace.empty_at = Some((now, 0));
        pace.generation = 1;
        pace
    }

    /// A call may go while fewer calls than this are under way; bounded only until IAM first
    /// throttles.
    fn window(&self) -> Option<f64> {
        (self.throttled == 0).then(|| START_WINDOW + self.accepted as f64 / WINDOW_GROWTH)
    }

    /// Lets one call go when its turn has come (and returns its ticket), or says what it waits
    /// for. A call let go must be [`released`](Pace::released) once it is answered or given up.
    pub fn try_send(&mut self, now: Duration) -> Result<Ticket, Wait> {
        if self
            .window()
            .is_some_and(|window| self.in_flight as f64 >= window)
        {
            return Err(Wait::Answer);
        }
        match self.bucket.take(now) {
            Ok(()) => {
                if let Some(since) = self.waiting_since.take() {
                    self.grow(now.saturating_sub(since), now);
                }
                // A quiet spell, or a second's worth of calls left unsent: IAM's bucket has been
                // refilling meanwhile, so calls counted from its last empty moment on would no
                // longer measure its rate.
                let quiet = self
                    .last_sent
                    .is_some_and(|last| now.saturating_sub(last) >= QUIET);
                if quiet || self.bucket.tokens() >= self.rate().max(2.0) {
                    self.empty_at = None;
                    self.bound = None;
                }
                self.last_sent = Some(now);
                self.in_flight += 1;
                if self.throttled == 0 {
                    // Read only at the first throttle.
                    self.forget_before(now);
                    self.recent.push_back(now);
                }
                Ok(Ticket {
                    generation: self.generation,
                })
            }
            Err(wait) => {
                self.waiting_since.get_or_insert(now);
                Err(Wait::For(wait))
            }
        }
    }

    /// Keeps only the calls let go in the [`RECENT`] before `now`.
    fn forget_before(&mut self, now: Duration) {
        while self
            .recent
            .front()
            .is_some_and(|&at| now.saturating_sub(at) >= RECENT)
        {
            self.recent.pop_front();
        }
    }

    /// The call waiting for a token was given up before its turn came (its attempt timed out,
    /// its run was stopped): nobody waits for the rate any more, so no growth is owed for it.
    pub fn gave_up(&mut self) {
        self.waiting_since = None;
    }

    /// A call let go is answered, or given up on.
    pub fn released(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The rate grows while calls wait for it: quickly up to the rate last measured and to what
    /// throttles since bound it to, slowly above (a bound or a measurement is a snapshot of a
    /// limit that other callers of the account move).
    fn grow(&mut self, waited: Duration, now: Duration) {
        let mut quick_until = self.max_rate;
        if let Some(bound) = self.bound {
            quick_until = quick_until.min(bound);
        }
        if let Some(found) = self.found {
            quick_until = quick_until.min(found * (1.0 - MARGIN));
        }
        let rate = self.rate();
        let grown = if rate < quick_until {
            (rate * (GROWTH_QUICK * waited.as_secs_f64()).exp()).min(quick_until)
        } else {
            (rate * (GROWTH_SLOW * waited.as_secs_f64()).exp()).min(self.max_rate)
        };
        if grown > rate {
            self.bucket.set_rate(grown, now);
        }
    }

    /// Takes in IAM's answer to a call sent with `ticket`.
    pub fn answered(&mut self, ticket: Ticket, answer: Answer, now: Duration) {
        match answer {
            Answer::Accepted => self.accepted += 1,
            Answer::Throttled => {
                self.throttled += 1;
                self.throttle(ticket, now);
            }
        }
    }

    fn throttle(&mut self, ticket: Ticket, now: Duration) {
        // IAM's bucket is empty: whatever burst is left here would only be throttled too.
        self.bucket.empty(now);
        let current = ticket.generation == self.generation;
        if !current {
            // Sent before the rate was last lowered (or a burst dropped): IAM may have judged it
            // before that moment, so it says nothing of the rate since.
            return;
        }
        let rate = match self.empty_at {
            None => {
                self.empty_at = Some((now, self.accepted));
                if self.found.is_some() {
                    // A burst after a quiet spell overran IAM's: it is gone now, and the rate
                    // measured still stands until the next throttle measures it again. The
                    // burst's other calls under way were sent into the same overrun.
                    self.generation += 1;
                    return;
                }
                if self.throttled == 1 {
                    // IAM's first throttle: it allows less than the calls went at.
                    self.forget_before(now);
                    let sent = self.recent.len();
                    self.recent = VecDeque::new();
                    sent as f64 / RECENT.as_secs_f64() * FIRST_CUT
                } else {
                    self.rate() * FIRST_CUT
                }
            }
            Some((since, accepted_then)) => {
                let span = now.saturating_sub(since);
                let accepted = self.accepted - accepted_then;
                let seconds = span.as_secs_f64().max(f64::EPSILON);
                if span >= MIN_SPAN && accepted >= MIN_ACCEPTED {
                    // Empty then and empty now: IAM refilled exactly what it accepted between.
                    let found = accepted as f64 / seconds;
                    self.found = Some(found);
                    self.empty_at = Some((now, self.accepted));
                    self.bound = None;
                    found * (1.0 - MARGIN)
                } else {
                    // Too soon to measure, but the call was sent after IAM's bucket was last
                    // seen empty, so IAM judged it after that too, and cannot have refilled
                    // more than one call more than it accepted since: a bound on its rate.
                    let at_most = (accepted + 1) as f64 / seconds;
                    self.bound = Some(self.bound.map_or(at_most, |b| b.min(at_most)));
                    let rate = (self.rate() * CUT).min(at_most * (1.0 - MARGIN));
                    if rate >= self.rate() {
                        return;
                    }
                    rate
                }
            }
        };
        self.bucket
            .set_rate(rate.clamp(MIN_RATE.min(self.max_rate), self.max_rate), now);
        self.generation += 1;
    }
}

/// The pacing of one account, shared by all its IAM clients and every run that uses them. Cheap to
/// clone; clones share the pace.
#[derive(Debug, Clone)]
pub struct Pacer {
    inner: Arc<PacerInner>,
}

#[derive(Debug)]
struct PacerInner {
    origin: Instant,
    pace: Mutex<Pace>,
    /// Calls wait for their turn in the order they asked for it.
    queue: tokio::sync::Mutex<()>,
    /// Woken whenever a call under way is answered or given up.
    released: tokio::sync::Notify,
}

impl Pacer {
    /// At most `max_rate` calls a second, after a burst of at most `burst`.
    pub fn new(max_rate: f64, burst: f64) -> Pacer {
        Pacer {
            inner: Arc::new(PacerInner {
                origin: Instant::now(),
                pace: Mutex::new(Pace::new(max_rate, burst, Duration::ZERO)),
                queue: tokio::sync::Mutex::new(()),
                released: tokio::sync::Notify::new(),
            }),
        }
    }

    fn now(&self) -> Duration {
        self.inner.origin.elapsed()
    }

    /// Waits until a call may be sent. The call counts as under way until the [`Sent`] returned
    /// is answered or dropped.
    pub async fn turn(&self) -> Sent {
        let _first_in_line = self.inner.queue.lock().await;
        let mut waiting = Waiting {
            pacer: self,
            sent: false,
        };
        loop {
            // Registered before the pace is asked, so that no release in between is missed.
            let released = self.inner.released.notified();
            let wait = match lock(&self.inner.pace).try_send(self.now()) {
                Ok(ticket) => {
                    waiting.sent = true;
                    return Sent {
                        ticket,
                        slot: Arc::new(Slot {
                            pacer: self.clone(),
                            released: AtomicBool::new(false),
                        }),
                    };
                }
                Err(wait) => wait,
            };
            match wait {
                Wait::For(wait) => tokio::time::sleep(wait).await,
                Wait::Answer => released.await,
            }
        }
    }

    /// A call is answered; `None` when the answer says nothing of IAM's bucket.
    fn answered(&self, sent: &Sent, answer: Option<Answer>) {
        if let Some(answer) = answer {
            let now = self.now();
            lock(&self.inner.pace).answered(sent.ticket, answer, now);
        }
        sent.slot.release();
    }

    /// Calls a second at the moment.
    pub fn rate(&self) -> f64 {
        lock(&self.inner.pace).rate()
    }
}

/// The call first in line for its turn. Dropped before it is let go (the call was given up while
/// it waited), it tells the pace, whose rate would otherwise grow later for a wait nobody waited.
struct Waiting<'a> {
    pacer: &'a Pacer,
    sent: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.sent {
            lock(&self.pacer.inner.pace).gave_up();
        }
    }
}

/// A call let go by a [`Pacer`]: under way until it is answered or dropped.
#[derive(Debug, Clone)]
pub struct Sent {
    ticket: Ticket,
    slot: Arc<Slot>,
}

/// A call's place in the window. The SDK's future of the call holds it until the answer is read
/// or the call is given up (a timeout, a broken connection, a cancelled run); every caller polls
/// its calls to the end, so a place is never held by a call nobody waits for.
#[derive(Debug)]
struct Slot {
    pacer: Pacer,
    released: AtomicBool,
}

impl Slot {
    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            lock(&self.pacer.inner.pace).released();
            self.pacer.inner.released.notify_waiters();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

/// An HTTP client whose every request waits for its turn with a [`Pacer`] before it is sent.
#[derive(Debug)]
pub struct PacedHttpClient {
    inner: SharedHttpClient,
    pacer: Pacer,
}

impl PacedHttpClient {
    pub fn new(inner: SharedHttpClient, pacer: Pacer) -> PacedHttpClient {
        PacedHttpClient { inner, pacer }
    }
}

impl HttpClient for PacedHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(PacedConnector {
            inner: self.inner.http_connector(settings, components),
            pacer: self.pacer.clone(),
        })
    }
}

#[derive(Debug)]
struct PacedConnector {
    inner: SharedHttpConnector,
    pacer: Pacer,
}

/// Whether an attempt's request went out, for the call count: tagged on the request before it is
/// sent, and marked by the pacing while the request waits for its turn, when it is handed to the
/// HTTP client, and when the HTTP client starts writing its body onto a connection. An attempt
/// given up before that (waiting for its turn, waiting for a connection, or handed on in the
/// very instant its time ran out) never reached AWS. A request of a client without pacing is
/// never marked, and always counts.
#[derive(Debug, Clone, Default)]
pub struct Dispatch(Arc<AtomicU8>);

const WAITING: u8 = 1;
const HANDED_ON: u8 = 2;
const WRITTEN: u8 = 3;

impl Dispatch {
    /// False only for a request that had not started on its way when it was given up.
    pub fn went_out(&self) -> bool {
        matches!(self.0.load(Ordering::Relaxed), 0 | WRITTEN)
    }

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }

    /// Hands `request` on: marked written as soon as the HTTP client reads its body to write it
    /// (at once when it has none).
    fn hand_on(request: &mut HttpRequest) {
        let Some(dispatch) = request.extension::<Dispatch>().cloned() else {
            return;
        };
        if request.body().content_length() == Some(0) {
            dispatch.set(WRITTEN);
            return;
        }
        dispatch.set(HANDED_ON);
        let body = request.take_body();
        *request.body_mut() = SdkBody::from_body_1_x(MarkedBody {
            inner: body,
            dispatch,
        });
    }
}

/// A request body that marks its [`Dispatch`] written when the HTTP client first reads it;
/// otherwise the body it wraps, length and end included.
struct MarkedBody {
    inner: SdkBody,
    dispatch: Dispatch,
}

impl Body for MarkedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.dispatch.set(WRITTEN);
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        Body::size_hint(&self.inner)
    }
}

impl Storable for Dispatch {
    type Storer = StoreReplace<Self>;
}

impl HttpConnector for PacedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, pacer) = (self.inner.clone(), self.pacer.clone());
        HttpConnectorFuture::new(async move {
            let mut request = request;
            if let Some(d) = request.extension::<Dispatch>() {
                d.set(WAITING);
            }
            let sent = pacer.turn().await;
            Dispatch::hand_on(&mut request);
            // A call that fails on the way drops its [`Sent`], which frees its place.
            let mut response = inner.call(request).await?;
            // The answer carries its ticket to [`PaceFeedback`], which classifies it.
            response.add_extension(sent);
            Ok(response)
        })
    }
}

/// Tells the pacer how IAM answered each attempt, as the SDK's retry classifiers read it.
#[derive(Debug, Clone)]
pub struct PaceFeedback {
    pacer: Pacer,
}

impl PaceFeedback {
    pub fn new(pacer: Pacer) -> PaceFeedback {
        PaceFeedback { pacer }
    }
}

impl Intercept for PaceFeedback {
    fn name(&self) -> &'static str {
        "forcemfa::PaceFeedback"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Only attempts that came back with an HTTP answer carry a ticket; a timeout before it or
        // a broken connection says nothing of IAM's bucket, and [`answer_of`] says which answers
        // do.
        let Some(sent) = context.response().and_then(|r| r.extension::<Sent>()) else {
            return Ok(());
        };
        let throttled = matches!(
            run_classifiers_on_ctx(runtime_components.retry_classifiers(), context.inner()),
            RetryAction::RetryIndicated(RetryReason::RetryableError {
                kind: ErrorKind::ThrottlingError,
                ..
            })
        );
        let attempt = Attempt {
            throttled,
            from_iam: context
                .response()
                .is_some_and(|r| r.headers().contains_key(IAM_REQUEST_ID)),
        };
        self.pacer.answered(sent, answer_of(attempt));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_paced_request_counts_as_gone_only_once_its_body_is_read() {
        use http_body_util::BodyExt;

        let dispatch = Dispatch::default();
        // A client without pacing never marks its requests: they always count.
        assert!(dispatch.went_out());
        let mut request = HttpRequest::new(SdkBody::from("Action=AddUserToGroup&UserName=carol"));
        request.add_extension(dispatch.clone());
        dispatch.set(WAITING);
        assert!(!dispatch.went_out(), "waiting for its turn");
        Dispatch::hand_on(&mut request);
        assert!(!dispatch.went_out(), "handed on, not yet written");
        assert_eq!(request.body().content_length(), Some(36));
        let body = futures::executor::block_on(request.take_body().collect())
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"Action=AddUserToGroup&UserName=carol");
        assert!(dispatch.went_out(), "written");

        // Nothing to write: gone as soon as it is handed on.
        let empty = Dispatch::default();
        let mut request = HttpRequest::new(SdkBody::empty());
        request.add_extension(empty.clone());
        empty.set(WAITING);
        Dispatch::hand_on(&mut request);
        assert!(empty.went_out());
    }

    #[test]
    fn a_bucket_spends_its_burst_at_its_pace_then_holds_its_rate() {
        let mut b = TokenBucket::new(10.0, 4.0, ms(0));
        // Two at once (the pace's depth), then one every 1/20 s while the burst lasts.
        assert_eq!(b.take(ms(0)), Ok(()));
        assert_eq!(b.take(ms(0)), Ok(()));
        let wait = b.take(ms(0)).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0 / 20.0).abs() < 1e-9, "{wait:?}");
        assert_eq!(b.take(ms(50)), Ok(()));
        assert_eq!(b.take(ms(100)), Ok(()));
        // The burst is spent: one every 100 ms from here.
        let mut sent = 0;
        let mut t = 100;
        while t <= 1100 {
            if b.take(ms(t)).is_ok() {
                sent += 1;
            }
            t += 1;
        }
        assert!((9..=11).contains(&sent), "{sent}");
    }

    #[test]
    fn a_bucket_refills_to_its_capacity_only() {
        let mut b = TokenBucket::new(10.0, 3.0, ms(0));
        b.empty(ms(0));
        assert_eq!(b.tokens(), 0.0);
        b.wait(ms(60_000));
        assert_eq!(b.tokens(), 3.0);
    }

    #[test]
    fn an_emptied_bucket_waits_a_full_token() {
        let mut b = TokenBucket::new(20.0, 40.0, ms(0));
        b.empty(ms(0));
        assert_eq!(b.wait(ms(0)), ms(50));
        b.set_rate(10.0, ms(0));
        assert_eq!(b.wait(ms(0)), ms(100));
        assert_eq!(b.wait(ms(100)), Duration::ZERO);
    }

    /// Sends `n` calls through `pace` as fast as it allows, starting at `t`, every answer accepted.
    fn send_accepted(pace: &mut Pace, t: &mut Duration, n: usize) {
        for _ in 0..n {
            let ticket = loop {
                match pace.try_send(*t) {
                    Ok(ticket) => break ticket,
                    Err(Wait::For(wait)) => *t += wait,
                    Err(Wait::Answer) => panic!("nothing is under way"),
                }
            };
            pace.answered(ticket, Answer::Accepted, *t);
            pace.released();
        }
    }

    #[test]
    fn until_the_first_throttle_a_window_bounds_the_calls_under_way() {
        let mut pace = Pace::new(200.0, 100.0, ms(0));
        let mut t = ms(0);
        let one = loop_send(&mut pace, t);
        let _two = loop_send(&mut pace, t);
        assert_eq!(pace.try_send(ms(100)), Err(Wait::Answer));
        // From the first answer on, three.
        pace.answered(one, Answer::Accepted, ms(100));
        pace.released();
        let _three = loop_send(&mut pace, ms(100));
        let _four = loop_send(&mut pace, ms(100));
        assert_eq!(pace.try_send(ms(100)), Err(Wait::Answer));
        for _ in 0..3 {
            pace.released();
        }
        // Four from the 16th accepted on.
        send_accepted(&mut pace, &mut t, 14);
        let under_way: Vec<Ticket> = (0..3).map(|_| loop_send(&mut pace, t)).collect();
        assert_eq!(pace.try_send(t), Err(Wait::Answer));
        pace.released();
        send_accepted(&mut pace, &mut t, 1);
        let under_way = [under_way[1], under_way[2], loop_send(&mut pace, t)];
        let _fourth_under_way = loop_send(&mut pace, t);
        assert_eq!(pace.try_send(t + ms(100)), Err(Wait::Answer));
        // A throttle removes it: the rate holds IAM's pace from then on, however many calls
        // are under way.
        pace.answered(under_way[0], Answer::Throttled, t + ms(20));
        assert!(matches!(pace.try_send(t + ms(20)), Err(Wait::For(_))));
        for _ in 0..10 {
            loop_send(&mut pace, t + ms(20));
        }
    }

    #[test]
    fn the_first_throttle_cuts_the_rate_to_a_quarter_of_the_last_seconds_calls() {
        let mut pace = Pace::new(200.0, 100.0, ms(0));
        let mut t = ms(0);
        // 39 calls in the first 0.8 s (and none before), then a throttle.
        for _ in 0..39 {
            send_accepted(&mut pace, &mut t, 1);
            t += ms(20);
        }
        let ticket = loop_send(&mut pace, t);
        pace.answered(ticket, Answer::Throttled, t + ms(10));
        assert_eq!(pace.rate(), 10.0);
        assert_eq!(pace.found(), None);
        // No burst left: the next call waits a token's time at the new rate.
        assert_eq!(pace.try_send(t + ms(10)), Err(Wait::For(ms(100))));
    }

    fn loop_send(pace: &mut Pace, mut t: Duration) -> Ticket {
        loop {
            match pace.try_send(t) {
                Ok(ticket) => return ticket,
                Err(Wait::For(wait)) => t += wait,
                Err(Wait::Answer) => panic!("too many calls under way"),
            }
        }
    }

    #[test]
    fn throttles_of_calls_sent_before_a_cut_change_nothing_more() {
        let mut pace = Pace::new(200.0, 100.0, ms(0));
        let mut t = ms(0);
        send_accepted(&mut pace, &mut t, 30);
        let tickets: Vec<Ticket> = (0..4).map(|_| loop_send(&mut pace, t)).collect();
        for (i, ticket) in tickets.into_iter().enumerate() {
            pace.answered(ticket, Answer::Throttled, t + ms(20 + i as u64));
        }
        assert_eq!(
            pace.rate(),
            34.0 * 0.25,
            "four throttles of calls sent together are one signal"
        );
        assert_eq!(pace.counts(), (30, 4));
    }

    #[test]
    fn two_throttles_a_second_apart_measure_the_rate() {
        let mut pace = Pace::throttled_at(12.5, 50.0, 10.0, ms(0));
        // 18 calls accepted over the next 1.2 s, then a throttle: IAM refills 15 a second.
        let mut t = ms(0);
        send_accepted(&mut pace, &mut t, 18);
        assert!(t < ms(1200), "{t:?}");
        let ticket = loop_send(&mut pace, t);
        pace.answered(ticket, Answer::Throttled, ms(1200));
        assert_eq!(pace.found(), Some(15.0));
        assert!((pace.rate() - 14.25).abs() < 1e-9, "{}", pace.rate());
    }

    #[test]
    fn a_throttle_too_soon_to_measure_still_bounds_the_rate() {
        // IAM's first throttle at 10 ms; one call accepted after it, another sent and throttled.
        let mut pace = Pace::throttled_at(12.5, 50.0, 10.0, ms(10));
        let mut t = ms(10);
        send_accepted(&mut pace, &mut t, 1);
        let throttled = loop_send(&mut pace, t);
        // Half a second after the first throttle, with one call accepted since, IAM cannot be
        // refilling more than 4 a second.
        pace.answered(throttled, Answer::Throttled, ms(510));
        assert!((pace.rate() - 3.8).abs() < 1e-9, "{}", pace.rate());
        assert_eq!(pace.found(), None);
        // Quick growth stops at that bound; above it the rate only creeps.
        let mut t = ms(510);
        send_accepted(&mut pace, &mut t, 20);
        assert!(pace.rate() >= 4.0 && pace.rate() < 4.3, "{}", pace.rate());
    }

    #[test]
    fn the_rate_grows_only_while_calls_wait_for_it() {
        let mut pace = Pace::throttled_at(12.5, 50.0, 1.0, ms(0));
        // Nobody waits for a minute: the rate stays.
        let ticket = pace.try_send(ms(60_000)).unwrap();
        pace.answered(ticket, Answer::Accepted, ms(60_000));
        assert_eq!(pace.rate(), 12.5);
        // Calls waiting back to back for more than a second more than double it, up to the
        // maximum.
        let mut t = ms(60_000);
        send_accepted(&mut pace, &mut t, 25);
        assert!(pace.rate() > 25.0, "{}", pace.rate());
        send_accepted(&mut pace, &mut t, 200);
        assert_eq!(pace.rate(), 50.0);
    }

    /// A pace that has measured IAM at 15 calls a second; returns it and the time.
    fn measured_at_15() -> (Pace, Duration) {
        let mut pace = Pace::throttled_at(12.5, 50.0, 10.0, ms(0));
        let mut t = ms(0);
        send_accepted(&mut pace, &mut t, 18);
        let ticket = loop_send(&mut pace, t);
        pace.answered(ticket, Answer::Throttled, ms(1200));
        assert_eq!(pace.found(), Some(15.0));
        (pace, ms(1200))
    }

    /// Ten seconds after IAM was measured at 15 a second, three calls of a burst go together and
    /// IAM throttles them all, one overrun; their answers come `apart` from one another. The rate
    /// measured holds through every one of them. Returns the pace and when the last answer came.
    fn an_overrun_burst_answered(apart: Duration) -> (Pace, Duration) {
        let (mut pace, t) = measured_at_15();
        let later = t + ms(10_000);
        let tickets: Vec<Ticket> = (0..3).map(|_| loop_send(&mut pace, later)).collect();
        let mut at = later + ms(20);
        for ticket in tickets {
            pace.answered(ticket, Answer::Throttled, at);
            // (The burst's calls were spaced out, and the rate crept up by a hair meanwhile.)
            assert!((pace.rate() - 14.25).abs() < 0.01, "{}", pace.rate());
            at += apart;
        }
        (pace, at - apart)
    }

    #[test]
    fn a_burst_overrun_after_a_quiet_spell_keeps_the_measured_rate() {
        let (mut pace, last) = an_overrun_burst_answered(ms(1));
        // What was left of the burst is gone.
        assert!(pace.try_send(last + ms(3)).is_err());
    }

    #[test]
    fn late_answers_to_an_overrun_burst_change_nothing_either() {
        // IAM judged all three as they came in; its answers reach us a tenth of a second apart.
        an_overrun_burst_answered(ms(100));
    }

    #[test]
    fn below_the_measured_rate_growth_is_quick_above_it_slow() {
        let (mut pace, mut t) = measured_at_15();
        // Another throttle 0.7 s later: too soon to measure, so the rate is halved.
        send_accepted(&mut pace, &mut t, 9);
        let ticket = loop_send(&mut pace, t);
        pace.answered(ticket, Answer::Throttled, ms(1900));
        assert!((pace.rate() - 7.15).abs() < 0.05, "{}", pace.rate());
        // It doubles back within a second or so of waiting calls, to 5% below the measurement ...
        let mut t = ms(1900);
        send_accepted(&mut pace, &mut t, 12);
        assert!((pace.rate() - 14.25).abs() < 0.1, "{}", pace.rate());
        // ... and creeps above it: 1% a second.
        let started = t;
        send_accepted(&mut pace, &mut t, 150);
        let seconds = (t - started).as_secs_f64();
        let expected = 14.25 * (0.01 * seconds).exp();
        assert!(
            (pace.rate() - expected).abs() < 0.2,
            "{} {expected}",
            pace.rate()
        );
    }

    #[test]
    fn the_rate_stays_within_its_bounds() {
        let mut pace = Pace::new(4.0, 1.0, ms(0));
        for i in 0..20 {
            let ticket = loop_send(&mut pace, ms(i * 10_000));
            pace.answered(ticket, Answer::Throttled, ms(i * 10_000 + 1));
        }
        assert_eq!(pace.rate(), MIN_RATE);
        let mut low = Pace::new(0.5, 1.0, ms(0));
        let ticket = low.try_send(ms(0)).unwrap();
        low.answered(ticket, Answer::Throttled, ms(1));
        assert_eq!(
            low.rate(),
            0.5,
            "never below a maximum set under the minimum"
        );
    }

    #[tokio::test]
    async fn a_call_given_up_frees_its_place_in_the_window() {
        let pacer = Pacer::new(200.0, 100.0);
        let first = pacer.turn().await;
        let _second = pacer.turn().await;
        let third = tokio::time::timeout(Duration::from_millis(100), pacer.turn()).await;
        assert!(third.is_err(), "two calls under way fill the first window");
        let waiting = tokio::spawn({
            let pacer = pacer.clone();
            async move { pacer.turn().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The first call's connection failed: nothing answered it, and its place is free again.
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("a freed place lets the next call go")
            .unwrap();
    }

    #[test]
    fn only_an_answer_from_iam_counts_against_its_bucket() {
        let answer = |throttled, from_iam| {
            answer_of(Attempt {
                throttled,
                from_iam,
            })
        };
        assert_eq!(answer(true, true), Some(Answer::Throttled));
        // Whatever else IAM answered (a result, NoSuchEntity, a server error, a body cut short),
        // it took the call in and spent a token on it.
        assert_eq!(answer(false, true), Some(Answer::Accepted));
        // A throttle is a throttle, whoever says it.
        assert_eq!(answer(true, false), Some(Answer::Throttled));
        // An answer IAM did not give (a proxy's error page, a load balancer's 502) says nothing
        // of IAM's bucket.
        assert_eq!(answer(false, false), None);
    }

    #[tokio::test]
    async fn a_call_given_up_while_it_waits_for_the_rate_does_not_grow_it_later() {
        let pacer = Pacer::new(200.0, 10.0);
        // Just after IAM's first throttle, at 5 a second: the next token is 0.2 s off.
        *lock(&pacer.inner.pace) = Pace::throttled_at(5.0, 200.0, 10.0, pacer.now());
        // A call waits for it and is given up (its attempt timed out, its run was stopped).
        let given_up = tokio::time::timeout(Duration::from_millis(50), pacer.turn()).await;
        assert!(given_up.is_err());
        // Well after, the next call finds a token at once. Nobody waited in between, so the
        // rate has not grown.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let _sent = pacer.turn().await;
        assert_eq!(pacer.rate(), 5.0);
    }

    /// IAM's side: a token bucket that answers `Throttling` when empty.
    struct Iam {
        rate: f64,
        burst: f64,
        tokens: f64,
        at: f64,
    }

    impl Iam {
        fn take(&mut self, t: f64) -> Answer {
            self.tokens = (self.tokens + (t - self.at) * self.rate).min(self.burst);
            self.at = t;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                Answer::Accepted
            } else {
                Answer::Throttled
            }
        }
    }

    /// The calls of a run: `chain` one after the other (the pages of the bulk listings), then
    /// `reads` and then `writes`, `concurrency` at a time.
    #[derive(Debug, Clone, Copy)]
    struct Shape {
        chain: u64,
        reads: u64,
        writes: u64,
    }

    impl Shape {
        fn calls(&self) -> u64 {
            self.chain + self.reads + self.writes
        }
    }

    /// What a simulated run took.
    #[derive(Debug)]
    struct Outcome {
        seconds: f64,
        throttled: u64,
    }

    /// Runs a run of `shape` through a pace against IAM at `rate` and `burst`, each call answered
    /// `latency` after it is sent; a throttled call is sent again after the SDK's jittered
    /// backoff (up to 200 ms, doubling with each attempt).
    fn simulate(shape: Shape, rate: f64, burst: f64, latency: f64, seed: u64) -> Outcome {
        let concurrency = 8;
        let defaults = crate::config::AwsSettings::default();
        let mut pace = Pace::new(
            f64::from(defaults.max_requests_per_second),
            f64::from(defaults.burst),
            Duration::ZERO,
        );
        let mut iam = Iam {
            rate,
            burst,
            tokens: burst,
            at: 0.0,
        };
        let mut random = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut jitter = move || {
            random = random
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (random >> 11) as f64 / (1u64 << 53) as f64
        };
        let dur = Duration::from_secs_f64;
        // Calls ready to be sent (from when, attempt), and calls sent (answered when, ticket,
        // answer, attempt).
        let mut ready: Vec<(f64, u32)> = vec![(0.0, 0)];
        let mut sent: Vec<(f64, Ticket, Answer, u32)> = Vec::new();
        let (mut started, mut done, mut t) = (1u64, 0u64, 0.0);
        let phase_end = |done: u64| {
            if done < shape.chain {
                done + 1
            } else if done < shape.chain + shape.reads {
                shape.chain + shape.reads
            } else {
                shape.calls()
            }
        };
        while done < shape.calls() {
            // Start what the run's phase allows.
            while started < phase_end(done) && (ready.len() + sent.len()) < concurrency {
                started += 1;
                ready.push((t, 0));
            }
            let (r, next_ready) = earliest(ready.iter().map(|c| c.0));
            let (s, next_answer) = earliest(sent.iter().map(|c| c.0));
            if next_answer <= next_ready {
                let (at, ticket, answer, attempt) = sent.swap_remove(s);
                t = at;
                pace.answered(ticket, answer, dur(t));
                pace.released();
                if answer == Answer::Throttled {
                    let backoff = jitter() * 0.2 * 2f64.powi(attempt as i32);
                    ready.push((t + backoff, attempt + 1));
                } else {
                    done += 1;
                }
                continue;
            }
            t = next_ready;
            match pace.try_send(dur(t)) {
                Ok(ticket) => {
                    let (_, attempt) = ready.swap_remove(r);
                    sent.push((t + latency, ticket, iam.take(t + latency / 2.0), attempt));
                }
                Err(Wait::For(wait)) => ready[r].0 = t + wait.as_secs_f64(),
                Err(Wait::Answer) => ready[r].0 = next_answer,
            }
        }
        Outcome {
            seconds: t,
            throttled: pace.counts().1,
        }
    }

    /// The index and time of the earliest of `times` (infinity when there are none).
    fn earliest(times: impl Iterator<Item = f64>) -> (usize, f64) {
        times
            .enumerate()
            .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a })
    }

    /// The shapes of `scripts/bench`'s accounts of 500 and 2,000 users.
    const SHAPES: [(&str, Shape); 4] = [
        (
            "500 dry",
            Shape {
                chain: 4,
                reads: 142,
                writes: 0,
            },
        ),
        (
            "500 apply",
            Shape {
                chain: 4,
                reads: 142,
                writes: 70,
            },
        ),
        (
            "2000 dry",
            Shape {
                chain: 6,
                reads: 562,
                writes: 0,
            },
        ),
        (
            "2000 apply",
            Shape {
                chain: 6,
                reads: 562,
                writes: 280,
            },
        ),
    ];

    /// The physical limit of a run: the calls beyond the burst at the rate, and the round trips
    /// that cannot overlap.
    fn limit(shape: Shape, rate: f64, burst: f64, latency: f64) -> f64 {
        let steps = shape.chain + 2;
        let unthrottled = (shape.chain as f64
            + (shape.reads as f64 / 8.0).ceil()
            + (shape.writes as f64 / 8.0).ceil())
            * latency;
        ((shape.calls() as f64 - burst).max(0.0) / rate + steps as f64 * latency).max(unthrottled)
    }

    #[test]
    fn against_a_bucket_it_does_not_know_it_runs_near_the_limit_with_few_throttles() {
        // A deep bucket lets the window open further before it runs dry, and costs a throttle or
        // two more.
        for (rate, burst, share) in [
            (5.0, 10.0, 0.05),
            (10.0, 20.0, 0.05),
            (20.0, 40.0, 0.05),
            (50.0, 100.0, 0.05),
            (10.0, 40.0, 0.06),
        ] {
            for latency in [0.003, 0.05] {
                for (name, shape) in SHAPES {
                    for seed in 0..3 {
                        let run = simulate(shape, rate, burst, latency, seed);
                        let limit = limit(shape, rate, burst, latency);
                        let case = format!("{name} at {rate}/s (burst {burst}), {latency}s");
                        assert!(
                            run.seconds <= limit * 1.2 + 0.1,
                            "{case}: {:.2}s, limit {limit:.2}s",
                            run.seconds
                        );
                        assert!(
                            run.throttled as f64 <= shape.calls() as f64 * share,
                            "{case}: {} throttled",
                            run.throttled
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn an_account_that_never_throttles_is_not_held_back() {
        for (name, shape) in SHAPES {
            let run = simulate(shape, 1e6, 1e6, 0.05, 0);
            // Eight calls in flight, 50 ms each: the most the caller could do unpaced. The
            // window costs a little of it while it opens.
            let unpaced = limit(shape, 1e6, 1e6, 0.05);
            assert!(run.seconds <= unpaced * 1.4, "{name}: {:.2}s", run.seconds);
            assert_eq!(run.throttled, 0);
        }
    }

    #[test]
    #[ignore = "prints the grid the pacing's constants were chosen on"]
    fn grid() {
        for (rate, burst) in [
            (5.0, 10.0),
            (10.0, 20.0),
            (20.0, 40.0),
            (50.0, 100.0),
            (100.0, 200.0),
            (1e6, 1e6),
        ] {
            for latency in [0.003, 0.05] {
                for (name, shape) in SHAPES {
                    let outcomes: Vec<Outcome> = (0..5)
                        .map(|seed| simulate(shape, rate, burst, latency, seed))
                        .collect();
                    let limit = limit(shape, rate, burst, latency);
                    let worst = outcomes.iter().map(|o| o.seconds).fold(0.0, f64::max);
                    let throttled = outcomes.iter().map(|o| o.throttled).max().unwrap();
                    println!(
                        "{rate:>7}/s {latency:>5}s {name:>10}: limit {limit:6.2}s worst {:5.2}x throttled {throttled:3} ({:4.1}%)",
                        worst / limit,
                        throttled as f64 * 100.0 / shape.calls() as f64
                    );
                }
            }
        }
    }
}
