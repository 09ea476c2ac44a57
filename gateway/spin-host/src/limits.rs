//! Per-request resource limits: deadline (epoch interruption) and memory.
//!
//! Spin runs untrusted-ish guest code per request; one runaway request must
//! not stall a worker thread or eat the gateway's memory. A ticker thread
//! bumps the engine epoch every [`EPOCH_TICK`]; at every tick a running guest
//! *yields* to the async runtime (so a CPU-bound guest shares its worker
//! thread with the gateway's other tasks instead of holding it until the
//! deadline) and traps once its deadline has passed. Guests blocked in host
//! calls are cut by a wall-clock timeout, and memory by both the pooling
//! allocator's slot size and [`MemoryCap`], which also remembers that it
//! refused to grow so the error can say "memory limit" instead of a bare
//! `unreachable` trap.

use std::thread;
use std::time::{Duration, Instant};

use wasmtime::{EngineWeak, ResourceLimiter, Store, UpdateDeadline};

use crate::wasi::HostState;

/// How often the engine epoch advances; the deadline granularity.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Extra wall-clock time given after the epoch deadline before the request is
/// abandoned, so CPU-bound guests are reported by the (more precise) trap.
pub(crate) const WALL_CLOCK_GRACE: Duration = Duration::from_millis(250);

/// Caps one instance's linear memory and records a refused growth.
///
/// A refused `memory.grow` returns -1 to the guest, which in Rust ends in an
/// allocation-failure abort (an `unreachable` trap): without the record the
/// host could not tell a memory-capped request from any other trap.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    max_bytes: usize,
    /// The size a refused growth asked for, since the last [`MemoryCap::take_refusal`].
    refused: Option<usize>,
}

impl MemoryCap {
    /// A cap of `max_bytes` per memory.
    pub fn new(max_bytes: usize) -> Self {
        MemoryCap {
            max_bytes,
            refused: None,
        }
    }

    /// The refused size, if a growth was refused; clears the record.
    pub fn take_refusal(&mut self) -> Option<usize> {
        self.refused.take()
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pooling allocator's table slots.
        Ok(true)
    }
}

/// Arms a store for one request: until `deadline` the guest yields at every
/// epoch tick, after it the guest traps with [`wasmtime::Trap::Interrupt`].
pub(crate) fn arm_deadline(store: &mut Store<HostState>, deadline: Instant) {
    store.data_mut().deadline = deadline;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        if Instant::now() >= ctx.data().deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        }
    });
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
    fn memory_cap_refuses_growth_past_the_cap_and_remembers_it() {
        let mut cap = MemoryCap::new(1 << 20);
        assert!(cap.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(cap.take_refusal(), None);
        assert!(
            !cap.memory_growing(1 << 20, (1 << 20) + 65536, None)
                .unwrap()
        );
        assert_eq!(cap.take_refusal(), Some((1 << 20) + 65536));
        assert_eq!(cap.take_refusal(), None, "the record is cleared once read");
    }
}
