//! The [`Pace`] of one account shared between its tasks: calls wait in line for their turn, and
//! a call's place in the window is freed however the call ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::pace::{Answer, Pace, RateStamp, Wait};
use crate::sync::lock;

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

    pub(super) fn now(&self) -> Duration {
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
                Ok(stamp) => {
                    waiting.sent = true;
                    return Sent {
                        stamp,
                        place: Arc::new(WindowPlace {
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
    pub(super) fn answered(&self, sent: &Sent, answer: Option<Answer>) {
        if let Some(answer) = answer {
            let now = self.now();
            lock(&self.inner.pace).answered(sent.stamp, answer, now);
        }
        sent.place.release();
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
    stamp: RateStamp,
    place: Arc<WindowPlace>,
}

/// A call's place in the window. The SDK's future of the call holds it until the answer is read
/// or the call is given up (a timeout, a broken connection, a cancelled run); every caller polls
/// its calls to the end, so a place is never held by a call nobody waits for.
#[derive(Debug)]
struct WindowPlace {
    pacer: Pacer,
    released: AtomicBool,
}

impl WindowPlace {
    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            lock(&self.pacer.inner.pace).released();
            self.pacer.inner.released.notify_waiters();
        }
    }
}

impl Drop for WindowPlace {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
