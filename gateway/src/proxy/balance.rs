//! Picking a Spin replica: tower's power-of-two-choices
//! [`Balance`](tower::balance::p2c::Balance) over
//! [`PeakEwma`](tower::load::PeakEwma) loads, fed by the
//! [`discover`](super::discover) stream.
//!
//! `Balance` takes `&mut self` and is not `Clone`, so one task owns it and
//! requests reach it over a channel, as with `tower::buffer::Buffer`. This
//! module is that task, because a retry must go to another replica than
//! the one that failed, and `Balance` picks in `poll_ready`, before it sees
//! the request; `Buffer`'s worker gives no way to say, before that poll,
//! which replica the queued request must avoid. Here the dispatcher marks
//! the replica to avoid, and [`Gated`] makes it not ready while the pick
//! is made: `Balance` re-checks a chosen replica's readiness and picks
//! again (its hook for failure detectors). When no other replica is ready
//! the mark is lifted, so a request is never stranded by it.
//!
//! The call itself runs in the caller's task: the dispatcher hands back
//! the chosen replica and the call's future.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tower::balance::p2c::Balance;
use tower::discover::Change;
use tower::load::Load;
use tower::{BoxError, Service};

use super::discover::ReplicaKey;

/// A replica call, to be awaited by the caller.
pub type CallFuture<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

/// What the dispatcher hands back: the replica chosen and its call.
type Reply<R> = Result<(ReplicaKey, CallFuture<R>), BoxError>;

struct Job<Q, R> {
    request: Q,
    avoid: Option<ReplicaKey>,
    reply: oneshot::Sender<Reply<R>>,
}

/// A handle on the balancer task; clones share it. The task ends when the
/// last handle is dropped.
pub struct Balancer<Q, R> {
    jobs: mpsc::Sender<Job<Q, R>>,
}

impl<Q, R> Clone for Balancer<Q, R> {
    fn clone(&self) -> Self {
        Balancer {
            jobs: self.jobs.clone(),
        }
    }
}

/// Requests waiting for a pick; beyond it callers wait to enqueue.
const QUEUE: usize = 1024;

impl<Q: Send + 'static, R: Send + 'static> Balancer<Q, R> {
    /// Spawns the task balancing over the replicas `discover` yields.
    pub fn spawn<D, S>(discover: D) -> Self
    where
        D: tokio_stream::Stream<Item = Result<Change<ReplicaKey, S>, std::convert::Infallible>>
            + Send
            + Unpin
            + 'static,
        S: Service<Q, Response = R> + Load + Send + 'static,
        S::Error: Into<BoxError> + 'static,
        S::Future: Send + 'static,
        <S as Load>::Metric: std::fmt::Debug,
    {
        let avoid = Arc::new(Avoid::default());
        let gate = avoid.clone();
        let gated = discover.map(move |change| {
            change.map(|change| match change {
                Change::Insert(key, inner) => {
                    let avoid = gate.clone();
                    Change::Insert(key.clone(), Gated { key, avoid, inner })
                }
                Change::Remove(key) => Change::Remove(key),
            })
        });
        let balance = Balance::new(Box::pin(gated));
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(dispatch(balance, avoid, queue));
        Balancer { jobs }
    }

    /// Picks a replica for `request`, another than `avoid` when one is
    /// ready; waits while none is.
    pub async fn pick(&self, request: Q, avoid: Option<ReplicaKey>) -> Reply<R> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request,
            avoid,
            reply,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| BoxError::from("the balancer has stopped"))?;
        answer
            .await
            .map_err(|_| BoxError::from("the balancer dropped the request"))?
    }
}

/// The balancer task: one pick at a time, as `Buffer`'s worker does.
async fn dispatch<D, S, Q, R>(
    mut balance: Balance<Pin<Box<D>>, Q>,
    avoid: Arc<Avoid>,
    mut queue: mpsc::Receiver<Job<Q, R>>,
) where
    D: tokio_stream::Stream<Item = Result<Change<ReplicaKey, Gated<S>>, std::convert::Infallible>>,
    S: Service<Q, Response = R> + Load,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    <S as Load>::Metric: std::fmt::Debug,
{
    while let Some(mut job) = queue.recv().await {
        avoid.mark(job.avoid.take());
        let ready = poll_fn(|cx| match balance.poll_ready(cx) {
            // Only the avoided replica could be picked: take it after all.
            Poll::Pending if avoid.lift() => balance.poll_ready(cx),
            other => other,
        });
        let ready = tokio::select! {
            ready = ready => ready,
            // The caller gave up (its timeout) while no replica was ready.
            () = job.reply.closed() => {
                avoid.lift();
                continue;
            }
        };
        avoid.lift();
        let reply = ready.and_then(|()| {
            let call = balance.call(job.request);
            let chosen = avoid.take_chosen().ok_or("the balancer chose no replica")?;
            Ok((chosen, Box::pin(call) as CallFuture<R>))
        });
        let _ = job.reply.send(reply);
    }
}

/// The replica the current pick must avoid, and the one it chose.
#[derive(Default)]
struct Avoid(Mutex<AvoidState>);

#[derive(Default)]
struct AvoidState {
    key: Option<ReplicaKey>,
    waker: Option<Waker>,
    chosen: Option<ReplicaKey>,
}

impl Avoid {
    fn lock(&self) -> MutexGuard<'_, AvoidState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark(&self, key: Option<ReplicaKey>) {
        self.lock().key = key;
    }

    /// Clears the mark, waking the avoided replica; whether there was one.
    fn lift(&self) -> bool {
        let mut state = self.lock();
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        state.key.take().is_some()
    }

    /// Whether `key` is the avoided replica (remembering who to wake).
    fn blocks(&self, key: &ReplicaKey, cx: &mut Context<'_>) -> bool {
        let mut state = self.lock();
        if state.key.as_ref() != Some(key) {
            return false;
        }
        state.waker = Some(cx.waker().clone());
        true
    }

    fn take_chosen(&self) -> Option<ReplicaKey> {
        self.lock().chosen.take()
    }
}

/// A replica as the balancer sees it: not ready while it is the one to
/// avoid; says when it is called, so the dispatcher learns the pick.
pub struct Gated<S> {
    key: ReplicaKey,
    avoid: Arc<Avoid>,
    inner: S,
}

impl<S: Service<Q>, Q> Service<Q> for Gated<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if self.avoid.blocks(&self.key, cx) {
            return Poll::Pending;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Q) -> S::Future {
        self.avoid.lock().chosen = Some(self.key.clone());
        self.inner.call(request)
    }
}

impl<S: Load> Load for Gated<S> {
    type Metric = S::Metric;
    fn load(&self) -> S::Metric {
        self.inner.load()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use tower::load::Constant;

    use super::*;

    /// A replica that answers with its own name.
    struct Echo(&'static str);

    impl Service<()> for Echo {
        type Response = &'static str;
        type Error = Infallible;
        type Future = std::future::Ready<Result<&'static str, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Ok(self.0))
        }
    }

    fn balancer(names: &[&'static str]) -> Balancer<(), &'static str> {
        let (tx, rx) = mpsc::unbounded_channel();
        for name in names {
            let service = Constant::new(Echo(name), 1u32);
            tx.send(Ok(Change::Insert(ReplicaKey::new(name), service)))
                .unwrap();
        }
        // Keep the stream open, as the discovery task does.
        std::mem::forget(tx);
        Balancer::spawn(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
    }

    async fn picks(
        b: &Balancer<(), &'static str>,
        avoid: Option<&str>,
        n: usize,
    ) -> HashMap<&'static str, usize> {
        let mut counts = HashMap::new();
        for _ in 0..n {
            let (key, call) = b.pick((), avoid.map(ReplicaKey::new)).await.unwrap();
            let answer = call.await.unwrap();
            assert_eq!(key.as_str(), answer, "the key names the replica called");
            *counts.entry(answer).or_default() += 1;
        }
        counts
    }

    #[tokio::test]
    async fn a_retry_never_goes_back_to_the_replica_that_failed() {
        let b = balancer(&["a:1", "b:1", "c:1"]);
        let spread = picks(&b, None, 300).await;
        assert_eq!(spread.len(), 3, "p2c spreads over all: {spread:?}");
        let elsewhere = picks(&b, Some("a:1"), 300).await;
        assert!(!elsewhere.contains_key("a:1"), "{elsewhere:?}");
        assert_eq!(elsewhere.len(), 2, "{elsewhere:?}");
        // The avoided replica is back in the pool afterwards.
        let spread = picks(&b, None, 300).await;
        assert!(spread.contains_key("a:1"), "{spread:?}");
    }

    #[tokio::test]
    async fn avoiding_the_only_replica_still_serves_the_request() {
        let b = balancer(&["a:1"]);
        let only = picks(&b, Some("a:1"), 5).await;
        assert_eq!(only.get("a:1"), Some(&5));
    }
}
