//! Write transactions on one database file take turns in arrival order.
//!
//! SQLite lets one writer in at a time and makes the others poll: its busy
//! handler sleeps between attempts (up to 100 ms each), so a writer that
//! arrives while another is sleeping can take the lock first, again and
//! again. Under load (64 concurrent creates, each waiting on an fsync)
//! that starved some creates past the gateway's timeout. Within this
//! process, write transactions therefore queue here first, first come
//! first served, and are woken the moment the previous one ends; SQLite's
//! own lock and busy timeout still guard against other processes.
//!
//! Only explicit write transactions (`BEGIN IMMEDIATE` / `BEGIN EXCLUSIVE`)
//! queue: they say up front that they will write, and the turn is held
//! until the connection is back in autocommit mode (`COMMIT` or
//! `ROLLBACK`). Reads never queue (WAL lets them run beside the writer),
//! and neither do single autocommit writes, which SQLite handles as before.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Whether `statement` starts a transaction that takes the write lock now.
pub(crate) fn begins_write_transaction(statement: &str) -> bool {
    let mut words = statement
        .split(|c: char| c.is_ascii_whitespace() || c == ';')
        .filter(|w| !w.is_empty());
    matches!(words.next(), Some(w) if w.eq_ignore_ascii_case("BEGIN"))
        && matches!(words.next(), Some(w)
            if w.eq_ignore_ascii_case("IMMEDIATE") || w.eq_ignore_ascii_case("EXCLUSIVE"))
}

/// A ticket lock: strict arrival order, with waiters allowed to give up.
/// Each waiter sleeps on its own condition variable, so a handoff wakes
/// exactly the next writer rather than every waiting thread.
#[derive(Default)]
pub(crate) struct WriteQueue {
    state: Mutex<Tickets>,
}

#[derive(Default)]
struct Tickets {
    /// The next ticket to hand out.
    next: u64,
    /// The ticket whose turn it is (or, when `serving == next`, nobody's).
    serving: u64,
    /// Tickets whose holders stopped waiting: skipped when reached.
    abandoned: HashSet<u64>,
    /// Each waiting ticket's wake-up signal (all used with `state`).
    waiting: HashMap<u64, Arc<Condvar>>,
}

impl Tickets {
    /// Passes the turn on, skipping abandoned tickets, and wakes its owner.
    fn advance(&mut self) {
        self.serving += 1;
        while self.abandoned.remove(&self.serving) {
            self.serving += 1;
        }
        if let Some(signal) = self.waiting.get(&self.serving) {
            signal.notify_one();
        }
    }
}

/// The right to write, until dropped.
pub(crate) struct WriteTurn {
    queue: Arc<WriteQueue>,
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        self.queue.lock().advance();
    }
}

impl WriteQueue {
    fn lock(&self) -> MutexGuard<'_, Tickets> {
        // Counters only: consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for this caller's turn, at most `timeout`. Blocking: call it
    /// on the blocking pool. `None` when the wait timed out.
    pub(crate) fn wait_turn(self: &Arc<Self>, timeout: Duration) -> Option<WriteTurn> {
        let deadline = Instant::now() + timeout;
        let mut tickets = self.lock();
        let ticket = tickets.next;
        tickets.next += 1;
        if tickets.serving != ticket {
            let signal = Arc::new(Condvar::new());
            tickets.waiting.insert(ticket, signal.clone());
            while tickets.serving != ticket {
                let now = Instant::now();
                if now >= deadline {
                    tickets.waiting.remove(&ticket);
                    tickets.abandoned.insert(ticket);
                    return None;
                }
                tickets = signal
                    .wait_timeout(tickets, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            tickets.waiting.remove(&ticket);
        }
        Some(WriteTurn {
            queue: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn only_immediate_and_exclusive_begins_queue() {
        for yes in [
            "BEGIN IMMEDIATE",
            "begin immediate transaction",
            "  BEGIN\n EXCLUSIVE;",
            "BEGIN IMMEDIATE;",
        ] {
            assert!(begins_write_transaction(yes), "{yes:?}");
        }
        for no in [
            "BEGIN",
            "BEGIN DEFERRED",
            "BEGIN TRANSACTION",
            "COMMIT",
            "INSERT INTO t VALUES (1)",
            "SELECT 'BEGIN IMMEDIATE'",
            "",
        ] {
            assert!(!begins_write_transaction(no), "{no:?}");
        }
    }

    #[test]
    fn turns_follow_arrival_order() {
        let queue = Arc::new(WriteQueue::default());
        let first = queue.wait_turn(Duration::from_secs(5)).unwrap();
        let (tx, rx) = mpsc::channel();
        let mut waiters = Vec::new();
        for i in 0..4 {
            let shared = queue.clone();
            let tx = tx.clone();
            waiters.push(std::thread::spawn(move || {
                let turn = shared.wait_turn(Duration::from_secs(5)).unwrap();
                tx.send(i).unwrap();
                drop(turn);
            }));
            // Each one queued before the next arrives.
            while queue.lock().next < i + 2 {
                std::thread::yield_now();
            }
        }
        assert!(rx.try_recv().is_err(), "nobody writes while the first does");
        drop(first);
        for w in waiters {
            w.join().unwrap();
        }
        let order: Vec<u64> = rx.try_iter().collect();
        assert_eq!(order, [0, 1, 2, 3]);
    }

    #[test]
    fn a_waiter_that_gives_up_is_skipped() {
        let queue = Arc::new(WriteQueue::default());
        let first = queue.wait_turn(Duration::from_secs(5)).unwrap();
        assert!(queue.wait_turn(Duration::from_millis(20)).is_none());
        drop(first);
        // The abandoned ticket does not block the next writer.
        assert!(queue.wait_turn(Duration::from_millis(200)).is_some());
    }
}
