//! How the admin listener takes connections, so that nobody can starve it.
//!
//! The listener may face the network (`0.0.0.0` in a container), where anyone can open
//! connections without a token. Each connection costs a file descriptor and a read buffer, and the
//! process shares its descriptors with the AWS clients. So connections are bounded in number
//! ([`MAX_CONNECTIONS`], and a quarter of the limit on open files), in the time they may take to
//! send their request headers ([`HEADER_READ_TIMEOUT`]) and in their whole life
//! ([`MAX_LIFETIME`]), and each serves one request. At the cap, a newcomer takes the place of the oldest connection that has not sent its
//! request headers yet (then of one stuck answering for longer than [`SLOW_ANSWER`]); it is
//! refused only when every connection is answering a request. An attacker holding every slot with
//! idle connections therefore cannot keep a health probe out: its connections are the ones closed.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::sync::lock;

/// Connections open at once. Far more than probes and scrapers need, and few enough that the
/// AWS clients keep most of a default soft limit of 1,024 open files; under a lower limit, a
/// quarter of it ([`connection_cap`]).
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client has to send its request headers once connected.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may stay open in all, whatever it does.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30);
/// Every answer is computed at once; one still being sent after this long goes to a client that
/// does not read it, and may make room for a newcomer at the cap.
pub const SLOW_ANSWER: Duration = Duration::from_secs(5);
/// Bytes buffered per connection (hyper's smallest); a longer request head is refused.
const READ_BUFFER: usize = 8 * 1024;
/// Waits after an accept error that is not about one connection (out of file descriptors).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one warning about the listener's pressure in this interval, lest a flood of
/// connections become a flood of log lines.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected; its request headers have not all arrived.
    AwaitingRequest,
    /// Its request is being answered, since then.
    Answering(Instant),
}

#[derive(Debug)]
struct Slot {
    phase: Phase,
    close: CancellationToken,
}

/// The open connections in the order they were accepted.
#[derive(Debug)]
struct Slots {
    open: BTreeMap<u64, Slot>,
    next_id: u64,
    cap: usize,
}

/// What becomes of a new connection.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// It is served under this id.
    Admitted { id: u64, evicted: bool },
    /// Every slot is answering a request.
    Refused,
}

impl Slots {
    fn new(cap: usize) -> Slots {
        Slots {
            open: BTreeMap::new(),
            next_id: 0,
            cap,
        }
    }

    /// Makes room if needed, then admits a connection whose closing `close` triggers.
    fn admit(&mut self, close: CancellationToken, now: Instant) -> Admission {
        let mut evicted = false;
        if self.open.len() >= self.cap {
            let Some(victim) = self.victim(now) else {
                return Admission::Refused;
            };
            self.close(victim);
            evicted = true;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            Slot {
                phase: Phase::AwaitingRequest,
                close,
            },
        );
        Admission::Admitted { id, evicted }
    }

    /// The oldest connection still awaiting its request, else the oldest stuck answering one.
    fn victim(&self, now: Instant) -> Option<u64> {
        let oldest = |pred: &dyn Fn(&Phase) -> bool| {
            self.open
                .iter()
                .find(|(_, slot)| pred(&slot.phase))
                .map(|(id, _)| *id)
        };
        oldest(&|p| *p == Phase::AwaitingRequest).or_else(|| {
            oldest(&|p| matches!(p, Phase::Answering(since) if now.duration_since(*since) >= SLOW_ANSWER))
        })
    }

    /// Closes the oldest connection awaiting its request; false when there is none.
    fn close_oldest_idle(&mut self) -> bool {
        let idle = self
            .open
            .iter()
            .find(|(_, slot)| slot.phase == Phase::AwaitingRequest)
            .map(|(id, _)| *id);
        idle.map(|id| self.close(id)).is_some()
    }

    fn close(&mut self, id: u64) {
        if let Some(slot) = self.open.remove(&id) {
            slot.close.cancel();
        }
    }

    fn answering(&mut self, id: u64, now: Instant) {
        if let Some(slot) = self.open.get_mut(&id) {
            slot.phase = Phase::Answering(now);
        }
    }

    fn release(&mut self, id: u64) {
        self.open.remove(&id);
    }
}

/// A connection's place in [`Slots`], given back when the connection ends.
struct Ticket {
    slots: Arc<Mutex<Slots>>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.slots).release(self.id);
    }
}

/// Counts what the listener had to do under pressure, and says so now and then.
#[derive(Default)]
struct Pressure {
    cap: usize,
    evicted: u64,
    refused: u64,
    accept_errors: u64,
    last_warning: Option<Instant>,
}

impl Pressure {
    fn report(&mut self, error: Option<&io::Error>) {
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|at| now.duration_since(at) < WARN_INTERVAL)
        {
            return;
        }
        warn!(
            max_connections = self.cap,
            evicted = self.evicted,
            refused = self.refused,
            accept_errors = self.accept_errors,
            error = error.map(tracing::field::display),
            "admin listener under pressure: idle connections closed to admit new ones, connections refused, or accept failing"
        );
        *self = Pressure {
            cap: self.cap,
            last_warning: Some(now),
            ..Pressure::default()
        };
    }
}

/// How many connections the listener holds: [`MAX_CONNECTIONS`], or a quarter of the soft limit on
/// open files when that is fewer, so that whatever the limit, most descriptors stay with the AWS
/// clients.
pub fn connection_cap() -> usize {
    cap_for(open_files_limit())
}

fn cap_for(open_files: Option<u64>) -> usize {
    open_files
        .and_then(|n| usize::try_from(n / 4).ok())
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(1, MAX_CONNECTIONS)
}

/// The soft limit on open files; None when unlimited or unknown.
#[allow(unsafe_code)]
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `limit`, which outlives the call.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (known && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Errors that concern one connection only; the next accept may succeed at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Serves `app` on `listener` until `stop`, then closes every connection.
pub async fn serve(listener: TcpListener, app: Router, stop: CancellationToken) {
    let cap = connection_cap();
    let slots = Arc::new(Mutex::new(Slots::new(cap)));
    let mut pressure = Pressure {
        cap,
        ..Pressure::default()
    };
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stream
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors or memory: free a descriptor, and wait rather than spin.
                lock(&slots).close_oldest_idle();
                pressure.accept_errors += 1;
                pressure.report(Some(&e));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let close = stop.child_token();
        let admission = lock(&slots).admit(close.clone(), Instant::now());
        match admission {
            Admission::Admitted { id, evicted } => {
                if evicted {
                    pressure.evicted += 1;
                    pressure.report(None);
                }
                let ticket = Ticket {
                    slots: slots.clone(),
                    id,
                };
                tokio::spawn(connection(stream, app.clone(), ticket, close));
            }
            Admission::Refused => {
                pressure.refused += 1;
                pressure.report(None);
                drop(stream);
            }
        }
    }
}

/// Serves one request on `stream`, within the time limits, unless `close` comes first.
async fn connection(stream: TcpStream, app: Router, ticket: Ticket, close: CancellationToken) {
    let service = TowerToHyperService::new(app);
    let (slots, id) = (ticket.slots.clone(), ticket.id);
    // hyper calls the service once the request headers are in.
    let service = hyper::service::service_fn(move |request| {
        lock(&slots).answering(id, Instant::now());
        service.call(request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(READ_BUFFER)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = close.cancelled() => {}
        _ = tokio::time::sleep(MAX_LIFETIME) => {}
    }
    drop(ticket);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(slots: &mut Slots, now: Instant) -> (Admission, CancellationToken) {
        let close = CancellationToken::new();
        (slots.admit(close.clone(), now), close)
    }

    fn id(admission: &Admission) -> u64 {
        match admission {
            Admission::Admitted { id, .. } => *id,
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn below_the_cap_everyone_is_admitted() {
        let mut slots = Slots::new(3);
        let now = Instant::now();
        for expected in 0..3 {
            let (a, close) = admit(&mut slots, now);
            assert_eq!(
                a,
                Admission::Admitted {
                    id: expected,
                    evicted: false
                }
            );
            assert!(!close.is_cancelled());
        }
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let mut slots = Slots::new(3);
        let now = Instant::now();
        let (first, first_close) = admit(&mut slots, now);
        let (second, second_close) = admit(&mut slots, now);
        let (_, third_close) = admit(&mut slots, now);
        slots.answering(id(&first), now);

        let (newcomer, _) = admit(&mut slots, now);
        assert!(matches!(
            newcomer,
            Admission::Admitted { evicted: true, .. }
        ));
        assert!(
            !first_close.is_cancelled(),
            "an answering connection is kept"
        );
        assert!(second_close.is_cancelled(), "the oldest idle one is closed");
        assert!(!third_close.is_cancelled());
        assert!(!slots.open.contains_key(&id(&second)));
        assert_eq!(slots.open.len(), 3);
    }

    #[test]
    fn when_every_slot_answers_a_newcomer_is_refused_unless_an_answer_is_stuck() {
        let mut slots = Slots::new(2);
        let start = Instant::now();
        let (a, a_close) = admit(&mut slots, start);
        let (b, _) = admit(&mut slots, start);
        slots.answering(id(&a), start);
        slots.answering(id(&b), start + Duration::from_secs(1));

        let (refused, _) = admit(&mut slots, start + Duration::from_secs(1));
        assert_eq!(refused, Admission::Refused);
        assert_eq!(slots.open.len(), 2);

        let later = start + SLOW_ANSWER;
        let (admitted, _) = admit(&mut slots, later);
        assert!(matches!(
            admitted,
            Admission::Admitted { evicted: true, .. }
        ));
        assert!(
            a_close.is_cancelled(),
            "the answer stuck longest makes room"
        );
    }

    #[test]
    fn released_slots_are_free_again() {
        let mut slots = Slots::new(1);
        let now = Instant::now();
        let (a, _) = admit(&mut slots, now);
        slots.answering(id(&a), now);
        slots.release(id(&a));
        let (b, _) = admit(&mut slots, now);
        assert!(matches!(b, Admission::Admitted { evicted: false, .. }));
    }

    #[test]
    fn the_cap_leaves_most_open_files_to_the_aws_clients() {
        assert_eq!(cap_for(None), MAX_CONNECTIONS);
        assert_eq!(cap_for(Some(1_048_576)), MAX_CONNECTIONS);
        assert_eq!(cap_for(Some(1_024)), 256);
        assert_eq!(cap_for(Some(128)), 32);
        assert_eq!(cap_for(Some(2)), 1);
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn an_accept_error_frees_the_oldest_idle_connection() {
        let mut slots = Slots::new(4);
        let now = Instant::now();
        let (a, a_close) = admit(&mut slots, now);
        let (_, b_close) = admit(&mut slots, now);
        slots.answering(id(&a), now);
        assert!(slots.close_oldest_idle());
        assert!(!a_close.is_cancelled());
        assert!(b_close.is_cancelled());
        assert!(!slots.close_oldest_idle());
    }
}
