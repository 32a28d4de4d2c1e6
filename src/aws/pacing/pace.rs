//! The pure pacing: a bucket of calls on an explicit clock, and the [`Pace`] that finds IAM's rate
//! from its answers. No I/O and no clock of its own, so every rule is tested on a timeline.

use std::collections::VecDeque;
use std::time::Duration;

/// Before IAM has throttled anything, a call goes only while fewer calls are under way than this
/// ...
pub const START_WINDOW: f64 = 2.0;
/// ... plus the calls IAM has accepted divided by this (two at first, three from the first
/// answer on, four from the 16th, and so on). The calls under way when a bucket
/// of unknown size first runs dry are all throttled, so the window is small while few calls have
/// been accepted (a small bucket runs dry early) and opens as IAM keeps accepting them.
/// Measured with `scripts/bench` (see docs/performance.md).
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

/// The calls this side may send: a token bucket on an explicit clock (time since an arbitrary
/// origin). Not the SDK's retry `TokenBucket`, which rations retries, nor IAM's own bucket, whose
/// rate the [`Pace`] finds.
#[derive(Debug, Clone, PartialEq)]
pub struct CallBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    /// A second bucket, two tokens deep, refilled at [`BURST_PACE`] times the rate: it spaces the
    /// burst out instead of letting it all go at once.
    pace_tokens: f64,
    at: Duration,
}

const PACE_DEPTH: f64 = 2.0;

impl CallBucket {
    /// A full bucket.
    pub fn new(rate: f64, capacity: f64, now: Duration) -> CallBucket {
        CallBucket {
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

/// The header with which IAM marks every answer it gives, errors included.
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
pub struct RateStamp {
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
    bucket: CallBucket,
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
            bucket: CallBucket::new(max_rate, burst.max(1.0), now),
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
    pub(super) fn found(&self) -> Option<f64> {
        self.found
    }

    /// Answers IAM accepted and throttled so far.
    #[cfg(test)]
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.accepted, self.throttled)
    }

    /// A pace just after IAM's first throttle, at `now`, left its rate at `rate`.
    #[cfg(test)]
    pub(super) fn throttled_at(rate: f64, max_rate: f64, burst: f64, now: Duration) -> Pace {
        let mut pace = Pace::new(max_rate, burst, now);
        pace.bucket = CallBucket::new(rate, burst, now);
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

    /// Lets one call go when its turn has come (and returns its stamp), or says what it waits
    /// for. A call let go must be [`released`](Pace::released) once it is answered or given up.
    pub fn try_send(&mut self, now: Duration) -> Result<RateStamp, Wait> {
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
                Ok(RateStamp {
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

    /// Takes in IAM's answer to a call sent with `stamp`.
    pub fn answered(&mut self, stamp: RateStamp, answer: Answer, now: Duration) {
        match answer {
            Answer::Accepted => self.accepted += 1,
            Answer::Throttled => {
                self.throttled += 1;
                self.throttle(stamp, now);
            }
        }
    }

    fn throttle(&mut self, stamp: RateStamp, now: Duration) {
        // IAM's bucket is empty: whatever burst is left here would only be throttled too.
        self.bucket.empty(now);
        let current = stamp.generation == self.generation;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_bucket_spends_its_burst_at_its_pace_then_holds_its_rate() {
        let mut b = CallBucket::new(10.0, 4.0, ms(0));
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
        let mut b = CallBucket::new(10.0, 3.0, ms(0));
        b.empty(ms(0));
        assert_eq!(b.tokens(), 0.0);
        b.wait(ms(60_000));
        assert_eq!(b.tokens(), 3.0);
    }

    #[test]
    fn an_emptied_bucket_waits_a_full_token() {
        let mut b = CallBucket::new(20.0, 40.0, ms(0));
        b.empty(ms(0));
        assert_eq!(b.wait(ms(0)), ms(50));
        b.set_rate(10.0, ms(0));
        assert_eq!(b.wait(ms(0)), ms(100));
        assert_eq!(b.wait(ms(100)), Duration::ZERO);
    }

    /// Sends `n` calls through `pace` as fast as it allows, starting at `t`, every answer accepted.
    fn send_accepted(pace: &mut Pace, t: &mut Duration, n: usize) {
        for _ in 0..n {
            let stamp = loop {
                match pace.try_send(*t) {
                    Ok(stamp) => break stamp,
                    Err(Wait::For(wait)) => *t += wait,
                    Err(Wait::Answer) => panic!("nothing is under way"),
                }
            };
            pace.answered(stamp, Answer::Accepted, *t);
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
        let under_way: Vec<RateStamp> = (0..3).map(|_| loop_send(&mut pace, t)).collect();
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
        let stamp = loop_send(&mut pace, t);
        pace.answered(stamp, Answer::Throttled, t + ms(10));
        assert_eq!(pace.rate(), 10.0);
        assert_eq!(pace.found(), None);
        // No burst left: the next call waits a token's time at the new rate.
        assert_eq!(pace.try_send(t + ms(10)), Err(Wait::For(ms(100))));
    }

    fn loop_send(pace: &mut Pace, mut t: Duration) -> RateStamp {
        loop {
            match pace.try_send(t) {
                Ok(stamp) => return stamp,
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
        let stamps: Vec<RateStamp> = (0..4).map(|_| loop_send(&mut pace, t)).collect();
        for (i, stamp) in stamps.into_iter().enumerate() {
            pace.answered(stamp, Answer::Throttled, t + ms(20 + i as u64));
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
        let stamp = loop_send(&mut pace, t);
        pace.answered(stamp, Answer::Throttled, ms(1200));
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
        let stamp = pace.try_send(ms(60_000)).unwrap();
        pace.answered(stamp, Answer::Accepted, ms(60_000));
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
        let stamp = loop_send(&mut pace, t);
        pace.answered(stamp, Answer::Throttled, ms(1200));
        assert_eq!(pace.found(), Some(15.0));
        (pace, ms(1200))
    }

    /// Ten seconds after IAM was measured at 15 a second, three calls of a burst go together and
    /// IAM throttles them all, one overrun; their answers come `apart` from one another. The rate
    /// measured holds through every one of them. Returns the pace and when the last answer came.
    fn an_overrun_burst_answered(apart: Duration) -> (Pace, Duration) {
        let (mut pace, t) = measured_at_15();
        let later = t + ms(10_000);
        let stamps: Vec<RateStamp> = (0..3).map(|_| loop_send(&mut pace, later)).collect();
        let mut at = later + ms(20);
        for stamp in stamps {
            pace.answered(stamp, Answer::Throttled, at);
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
        let stamp = loop_send(&mut pace, t);
        pace.answered(stamp, Answer::Throttled, ms(1900));
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
            let stamp = loop_send(&mut pace, ms(i * 10_000));
            pace.answered(stamp, Answer::Throttled, ms(i * 10_000 + 1));
        }
        assert_eq!(pace.rate(), MIN_RATE);
        let mut low = Pace::new(0.5, 1.0, ms(0));
        let stamp = low.try_send(ms(0)).unwrap();
        low.answered(stamp, Answer::Throttled, ms(1));
        assert_eq!(
            low.rate(),
            0.5,
            "never below a maximum set under the minimum"
        );
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
}
