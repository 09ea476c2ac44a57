//! Per-request resource limits: deadline (epoch interruption) and memory.
//!
//! Spin runs untrusted-ish guest code per request; one runaway request must
//! not stall a worker thread or eat the gateway's memory. CPU loops are cut
//! by epoch interruption (a ticker thread bumps the engine epoch), guests
//! blocked in host calls by a wall-clock timeout, and memory by both the
//! pooling allocator's slot size and a per-store `StoreLimits`.

use std::thread;
use std::time::Duration;

use wasmtime::{EngineWeak, StoreLimits, StoreLimitsBuilder};

/// How often the engine epoch advances; the deadline granularity.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Extra wall-clock time given after the epoch deadline before the request is
/// abandoned, so CPU-bound guests are reported by the (more precise) trap.
pub(crate) const WALL_CLOCK_GRACE: Duration = Duration::from_millis(250);

/// Number of epoch ticks that make up `timeout` (at least one).
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos() / EPOCH_TICK.as_nanos();
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// Store limits for one request: caps total linear memory of the instance.
pub(crate) fn store_limits(max_memory_bytes: usize) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(max_memory_bytes)
        .trap_on_grow_failure(false)
        .build()
}

/// Starts the thread that ticks the engine epoch until the engine is dropped.
///
/// Holding only a weak reference lets the thread end by itself once the
/// `SpinApp` (and every in-flight store) is gone.
pub(crate) fn start_epoch_ticker(engine: EngineWeak) -> std::io::Result<()> {
    thread::Builder::new()
        .name("spin-host-epoch".into())
        .spawn(move || {
            loop {
                thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_down_but_never_zero() {
        assert_eq!(deadline_ticks(Duration::from_secs(30)), 3000);
        assert_eq!(deadline_ticks(Duration::from_millis(500)), 50);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 1);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
    }
}
