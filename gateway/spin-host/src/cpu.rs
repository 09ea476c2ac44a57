//! CPU time spent on one request, wherever it runs.
//!
//! The gateway's learned routing prices a path by the cores it takes from
//! every other request (the embedded host and the native handlers share
//! the machine's cores), so it needs each request's CPU time, not its wall
//! time: a request that waited or was preempted took wall time without
//! taking CPU. A request's work runs on several threads (the caller's
//! task, the guest's task, a blocking worker), so each part is measured
//! with its thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) around every
//! poll ([`Metered`]) or around a blocking call, and added to one shared
//! [`CpuMeter`].
//!
//! The meter travels as a request extension: a caller that wants the
//! figure inserts one, and [`crate::SpinApp::handle`] meters the guest's
//! task with it. Requests without one are not metered and pay nothing.
//!
//! A poll's CPU time is known only when the poll returns, and the guest
//! may hand over its response in the middle of the poll that computed it,
//! so a total read at the response would miss that work. The figure is
//! therefore reported when the request's last work has ended: the meter
//! calls its report ([`CpuMeter::reporting`]) when its last clone is
//! dropped (the guest's task done, the caller done).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// What a meter does with its total when its last clone is dropped.
type Report = Box<dyn FnOnce(Duration) + Send>;

/// CPU time summed over the parts of one request (cloned: one counter).
#[derive(Clone, Default)]
pub struct CpuMeter(Arc<Inner>);

#[derive(Default)]
struct Inner {
    nanos: AtomicU64,
    report: Mutex<Option<Report>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let report = self
            .report
            .get_mut()
            .map_or_else(|p| p.into_inner().take(), Option::take);
        if let Some(report) = report {
            report(Duration::from_nanos(*self.nanos.get_mut()));
        }
    }
}

impl std::fmt::Debug for CpuMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CpuMeter").field(&self.total()).finish()
    }
}

impl CpuMeter {
    /// A meter that calls `report` with its total once every clone of it
    /// is gone.
    pub fn reporting(report: impl FnOnce(Duration) + Send + 'static) -> Self {
        CpuMeter(Arc::new(Inner {
            nanos: AtomicU64::new(0),
            report: Mutex::new(Some(Box::new(report))),
        }))
    }

    /// Adds `cpu`.
    pub fn add(&self, cpu: Duration) {
        let nanos = u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX);
        self.0.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The CPU time measured so far.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.0.nanos.load(Ordering::Relaxed))
    }

    /// Runs `f` on this thread and adds the CPU time it took.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let (out, cpu) = measure(f);
        self.add(cpu);
        out
    }
}

/// Runs `f` on this thread; what it returned and the CPU time it took.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = thread_cpu();
    let out = f();
    (out, thread_cpu().saturating_sub(start))
}

/// The calling thread's CPU time so far.
pub fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// A future whose polls' CPU time goes to a [`CpuMeter`].
pub struct Metered<F> {
    inner: Pin<Box<F>>,
    meter: CpuMeter,
}

impl<F> Metered<F> {
    /// `inner`, metered by `meter`.
    pub fn new(inner: F, meter: CpuMeter) -> Self {
        Metered {
            inner: Box::pin(inner),
            meter,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let inner = this.inner.as_mut();
        this.meter.run(|| inner.poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burns at least `wall` of this thread's CPU.
    fn spin_for(wall: Duration) -> u64 {
        let start = thread_cpu();
        let mut x = 0u64;
        while thread_cpu().saturating_sub(start) < wall {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        x
    }

    #[test]
    fn blocking_work_is_counted_and_sleep_is_not() {
        let meter = CpuMeter::default();
        meter.run(|| spin_for(Duration::from_millis(20)));
        meter.run(|| std::thread::sleep(Duration::from_millis(50)));
        let total = meter.total();
        assert!(total >= Duration::from_millis(20), "{total:?}");
        assert!(
            total < Duration::from_millis(45),
            "sleep is not CPU: {total:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_poll_of_a_future_is_counted_and_its_waits_are_not() {
        let meter = CpuMeter::default();
        Metered::new(
            async {
                spin_for(Duration::from_millis(10));
                tokio::time::sleep(Duration::from_millis(50)).await;
                spin_for(Duration::from_millis(10));
            },
            meter.clone(),
        )
        .await;
        let total = meter.total();
        assert!(total >= Duration::from_millis(20), "both polls: {total:?}");
        assert!(
            total < Duration::from_millis(45),
            "not the sleep: {total:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_total_is_reported_once_the_last_part_of_the_work_ends() {
        let (tx, rx) = std::sync::mpsc::channel();
        let meter = CpuMeter::reporting(move |total| tx.send(total).unwrap_or(()));
        let task = tokio::spawn(Metered::new(
            async { spin_for(Duration::from_millis(10)) },
            meter.clone(),
        ));
        meter.add(Duration::from_millis(5));
        drop(meter);
        // The task holds the last clone: the report comes when it ends.
        task.await.unwrap_or_default();
        let total = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or(Duration::ZERO);
        assert!(total >= Duration::from_millis(15), "{total:?}");
        assert!(rx.try_recv().is_err(), "reported once");
    }
}
