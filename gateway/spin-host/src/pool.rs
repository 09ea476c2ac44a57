//! Instance slots, and the opt-in reuse of warm instances.
//!
//! Spin's model is a fresh instance per request, and that stays the default:
//! nothing a request leaves in linear memory can be seen by the next one.
//! Creating an instance is cheap but not free (a pooling-allocator slot,
//! the guest's own start-up work such as initialising statics), so a
//! component can opt in to serving requests *serially* on one instance, as
//! `wasmtime serve` allows for wasi:http 0.2 components. The rules that keep
//! that safe enough to offer:
//!
//! * an instance serves one request at a time: it is taken out of the idle
//!   list for the whole call and only put back after the guest's `handle`
//!   returned normally;
//! * it is recycled (dropped) after `max_requests`, after `idle` without
//!   work, and after any trap, deadline, error or abort;
//! * idle instances hold a slot, but a request that finds no free slot
//!   evicts an idle instance before it gives up.
//!
//! Every live instance (busy or idle) holds one permit of a semaphore sized
//! like the pooling allocator, so a full pool is known *before*
//! instantiating and reported as the typed [`crate::PoolFull`], never by
//! matching an allocator's error text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use crate::wasi::HostState;

/// When a component's instances may serve more than one request.
///
/// Absent (the default) means Spin's fresh instance per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReusePolicy {
    /// Requests one instance serves before it is recycled (at least 1; 1 is
    /// the same as no reuse).
    pub max_requests: u32,
    /// How long an instance may sit idle before it is recycled.
    pub idle: Duration,
}

/// A numbers-only view of the pool, for health output, metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Size of the pool (the most instances alive at once).
    pub capacity: usize,
    /// Instances running a request right now.
    pub busy: usize,
    /// Warm instances waiting for their component's next request.
    pub idle: usize,
}

/// A warm instance between two requests.
pub(crate) struct Warm {
    pub store: Store<HostState>,
    pub proxy: Proxy,
    /// Requests it has served so far.
    pub served: u32,
    /// When it became idle.
    since: Instant,
    /// Its slot.
    pub permit: OwnedSemaphorePermit,
}

/// What a request gets from the pool.
pub(crate) enum Lease {
    /// A warm instance of the component.
    Warm(Warm),
    /// A free slot: the caller instantiates into it.
    Fresh(OwnedSemaphorePermit),
}

/// The pool of instance slots, shared by all components of one app.
pub(crate) struct InstancePool {
    slots: Arc<Semaphore>,
    capacity: usize,
    /// Per component index: its reuse policy (if any) and idle instances,
    /// most recently used last.
    idle: Vec<Mutex<Vec<Warm>>>,
    reuse: Vec<Option<ReusePolicy>>,
}

impl InstancePool {
    /// A pool of `capacity` slots for components with the given policies
    /// (one entry per component, in manifest order).
    pub fn new(capacity: usize, reuse: Vec<Option<ReusePolicy>>) -> Self {
        InstancePool {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            idle: reuse.iter().map(|_| Mutex::new(Vec::new())).collect(),
            reuse,
        }
    }

    /// The reuse policy of component `index`.
    pub fn reuse(&self, index: usize) -> Option<ReusePolicy> {
        self.reuse.get(index).copied().flatten()
    }

    /// A warm instance of component `index` if it reuses instances and has
    /// one, else a free slot, evicting another component's idle instance if
    /// that is what it takes. `None` means every slot is busy.
    pub fn acquire(&self, index: usize) -> Option<Lease> {
        if let Some(policy) = self.reuse(index) {
            let mut idle = lock(self.idle.get(index)?);
            while let Some(warm) = idle.pop() {
                if warm.since.elapsed() < policy.idle {
                    return Some(Lease::Warm(warm));
                }
                // Stale: drop it (and its slot) and look further.
            }
        }
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(Lease::Fresh(permit));
        }
        // Every slot is taken; idle instances are the only ones we may take back.
        while self.evict_one() {
            if let Ok(permit) = self.slots.clone().try_acquire_owned() {
                return Some(Lease::Fresh(permit));
            }
        }
        None
    }

    /// Puts an instance that just finished a request normally back, unless
    /// its component does not reuse instances or it has served its quota.
    pub fn release(
        &self,
        index: usize,
        store: Store<HostState>,
        proxy: Proxy,
        served: u32,
        permit: OwnedSemaphorePermit,
    ) {
        let Some(policy) = self.reuse(index) else {
            return;
        };
        if served >= policy.max_requests {
            return;
        }
        if let Some(idle) = self.idle.get(index) {
            lock(idle).push(Warm {
                store,
                proxy,
                served,
                since: Instant::now(),
                permit,
            });
        }
    }

    /// Drops the longest-idle instance of any component; false if none.
    fn evict_one(&self) -> bool {
        // Lists are ordered by `since`: each one's first is its oldest.
        let mut oldest: Option<(usize, Instant)> = None;
        for (c, list) in self.idle.iter().enumerate() {
            if let Some(first) = lock(list).first()
                && oldest.is_none_or(|(_, t)| first.since < t)
            {
                oldest = Some((c, first.since));
            }
        }
        let Some((c, _)) = oldest else {
            return false;
        };
        let evicted = {
            let mut list = lock(&self.idle[c]);
            (!list.is_empty()).then(|| list.remove(0))
        };
        // Dropped outside the lock: tearing down a store is not free.
        drop(evicted);
        true
    }

    /// Drops instances idle for longer than their component allows.
    fn sweep(&self) {
        for (c, list) in self.idle.iter().enumerate() {
            let Some(policy) = self.reuse(c) else {
                continue;
            };
            let stale: Vec<Warm> = {
                let mut list = lock(list);
                let keep_from = list
                    .iter()
                    .position(|w| w.since.elapsed() < policy.idle)
                    .unwrap_or(list.len());
                list.drain(..keep_from).collect()
            };
            drop(stale);
        }
    }

    /// Current numbers.
    pub fn stats(&self) -> PoolStats {
        let idle: usize = self.idle.iter().map(|l| lock(l).len()).sum();
        let live = self.capacity - self.slots.available_permits();
        PoolStats {
            capacity: self.capacity,
            busy: live.saturating_sub(idle),
            idle,
        }
    }
}

/// Starts the thread that recycles instances idle for too long, so a quiet
/// component gives its slots and memory back. It ends with the pool.
pub(crate) fn start_sweeper(pool: Weak<InstancePool>) -> std::io::Result<()> {
    const EVERY: Duration = Duration::from_millis(500);
    std::thread::Builder::new()
        .name("spin-host-sweeper".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EVERY);
                match pool.upgrade() {
                    Some(pool) => pool.sweep(),
                    None => break,
                }
            }
        })
        .map(|_| ())
}

/// Locks a list, recovering it if a panic elsewhere poisoned the mutex (the
/// list itself is always consistent: only push/pop/drain touch it).
fn lock(m: &Mutex<Vec<Warm>>) -> std::sync::MutexGuard<'_, Vec<Warm>> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reuse policies by component id, resolved to manifest order; unknown ids
/// are an error so a typo in the gateway's config cannot silently disable
/// reuse.
pub(crate) fn policies_in_order(
    ids: &[String],
    by_id: &HashMap<String, ReusePolicy>,
) -> Result<Vec<Option<ReusePolicy>>, String> {
    if let Some(unknown) = by_id.keys().find(|k| !ids.contains(k)) {
        return Err(format!(
            "instance reuse is configured for component '{unknown}', which the manifest does not have (components: {})",
            ids.join(", ")
        ));
    }
    Ok(ids.iter().map(|id| by_id.get(id).copied()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_components_in_reuse_policies_are_refused() {
        let ids = vec!["list".to_string(), "create".to_string()];
        let policy = ReusePolicy {
            max_requests: 8,
            idle: Duration::from_secs(1),
        };
        let ok = policies_in_order(&ids, &HashMap::from([("create".to_string(), policy)]));
        assert_eq!(ok, Ok(vec![None, Some(policy)]));
        let err =
            policies_in_order(&ids, &HashMap::from([("lsit".to_string(), policy)])).unwrap_err();
        assert!(
            err.contains("'lsit'") && err.contains("list, create"),
            "{err}"
        );
    }

    #[test]
    fn a_full_pool_gives_no_slot_and_a_freed_slot_is_reused() {
        let pool = InstancePool::new(2, vec![None]);
        let a = pool.acquire(0);
        let b = pool.acquire(0);
        assert!(matches!(a, Some(Lease::Fresh(_))));
        assert!(matches!(b, Some(Lease::Fresh(_))));
        assert!(
            pool.acquire(0).is_none(),
            "third request must find the pool full"
        );
        assert_eq!(
            pool.stats(),
            PoolStats {
                capacity: 2,
                busy: 2,
                idle: 0
            }
        );
        drop(a);
        assert!(matches!(pool.acquire(0), Some(Lease::Fresh(_))));
    }
}
