//! The pacing against a simulated IAM: runs of the shapes `scripts/bench` measures, through a
//! [`Pace`] and an IAM bucket of a size it does not know, on a simulated clock. The pacing's
//! constants were chosen on this grid.

use std::time::Duration;

use super::pace::{Answer, Pace, RateStamp, Wait};

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
    // Calls ready to be sent (from when, attempt), and calls sent (answered when, stamp,
    // answer, attempt).
    let mut ready: Vec<(f64, u32)> = vec![(0.0, 0)];
    let mut sent: Vec<(f64, RateStamp, Answer, u32)> = Vec::new();
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
            let (at, stamp, answer, attempt) = sent.swap_remove(s);
            t = at;
            pace.answered(stamp, answer, dur(t));
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
            Ok(stamp) => {
                let (_, attempt) = ready.swap_remove(r);
                sent.push((t + latency, stamp, iam.take(t + latency / 2.0), attempt));
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
