//! Where the Spin replicas come from, as a [`tower::discover`] stream of
//! [`Change`]s the balancer consumes.
//!
//! Each `[spin] upstream` is a replica. With `resolve_every_ms`, an
//! upstream whose host is a DNS name stands for every address it resolves
//! to (a Kubernetes headless Service answers one A record per ready pod):
//! it is resolved at start and then every `resolve_every`, and the set
//! changes by difference, so a replica that stays keeps its load estimate
//! and outlier state. A failed lookup keeps that name's last addresses
//! (as Envoy's strict DNS does). Without `resolve_every_ms` a name is one
//! replica, resolved by the connector on each new connection.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tower::discover::Change;

use crate::config::MAX_UPSTREAMS;

/// A replica's identity: the `host:port` connections go to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaKey(Arc<str>);

impl ReplicaKey {
    /// The replica at `host:port` (`[v6]:port` for IPv6).
    pub fn new(authority: &str) -> Self {
        ReplicaKey(authority.into())
    }

    /// The replica for a resolved address.
    pub fn of(addr: SocketAddr) -> Self {
        ReplicaKey::new(&addr.to_string())
    }

    /// `host:port`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host (brackets of an IPv6 address removed): `server.address`.
    pub fn host(&self) -> &str {
        let host = self.0.rsplit_once(':').map_or(&*self.0, |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The port: `server.port`.
    pub fn port(&self) -> u16 {
        self.0
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(80)
    }
}

/// The replicas in force, each with the upstream it came from.
pub type Replicas = BTreeMap<ReplicaKey, Uri>;

/// The changes from `old` to `new`: removals first, then additions.
pub fn changes(old: &Replicas, new: &Replicas) -> Vec<Change<ReplicaKey, Uri>> {
    let removed = old.keys().filter(|k| !new.contains_key(*k)).cloned();
    let added = new.iter().filter(|(k, _)| !old.contains_key(*k));
    removed
        .map(Change::Remove)
        .chain(added.map(|(k, u)| Change::Insert(k.clone(), u.clone())))
        .collect()
}

/// Whether `upstream` names its host by DNS (and so may be re-resolved).
fn is_name(upstream: &Uri) -> bool {
    let host = upstream.host().unwrap_or_default();
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_err()
}

/// `host:port` of an upstream as listed, the port defaulted to 80.
fn listed(upstream: &Uri) -> ReplicaKey {
    let host = upstream.host().unwrap_or_default();
    ReplicaKey::new(&format!("{host}:{}", upstream.port_u16().unwrap_or(80)))
}

/// The replicas `upstreams` stand for now; a name whose lookup fails
/// keeps what it had in `previous`. At most [`MAX_UPSTREAMS`].
async fn resolve(upstreams: &[Uri], resolving: bool, previous: &Replicas) -> Replicas {
    let mut out = Replicas::new();
    for upstream in upstreams {
        if !resolving || !is_name(upstream) {
            out.insert(listed(upstream), upstream.clone());
            continue;
        }
        let host = upstream.host().unwrap_or_default();
        let port = upstream.port_u16().unwrap_or(80);
        match tokio::net::lookup_host((host, port)).await {
            Ok(addrs) => {
                for addr in addrs {
                    out.insert(ReplicaKey::of(addr), upstream.clone());
                }
            }
            Err(e) => {
                tracing::warn!(%upstream, error = %e, "DNS lookup failed; keeping its last addresses");
                for (key, from) in previous {
                    if from == upstream {
                        out.insert(key.clone(), from.clone());
                    }
                }
            }
        }
    }
    if out.len() > MAX_UPSTREAMS {
        tracing::warn!(
            found = out.len(),
            kept = MAX_UPSTREAMS,
            "too many Spin replicas"
        );
        out = out.into_iter().take(MAX_UPSTREAMS).collect();
    }
    out
}

/// The replica set's changes, as `make` turns each new replica into a
/// service (and `forget` hears of each one gone). A task resolves at start
/// and, with `resolve_every`, again at that period; it ends when the
/// stream is dropped.
pub fn watch<S, F, G>(
    upstreams: Vec<Uri>,
    resolve_every: Option<Duration>,
    make: F,
    forget: G,
) -> UnboundedReceiverStream<Result<Change<ReplicaKey, S>, Infallible>>
where
    S: Send + 'static,
    F: Fn(&ReplicaKey, &Uri) -> S + Send + 'static,
    G: Fn(&ReplicaKey) + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut current = Replicas::new();
        loop {
            let next = resolve(&upstreams, resolve_every.is_some(), &current).await;
            for change in changes(&current, &next) {
                let change = match change {
                    Change::Insert(key, uri) => {
                        let service = make(&key, &uri);
                        Change::Insert(key, service)
                    }
                    Change::Remove(key) => {
                        forget(&key);
                        Change::Remove(key)
                    }
                };
                if tx.send(Ok(change)).is_err() {
                    return;
                }
            }
            current = next;
            let Some(every) = resolve_every else { break };
            if !upstreams.iter().any(is_name) {
                break;
            }
            tokio::time::sleep(every).await;
            if tx.is_closed() {
                return;
            }
        }
        // A fixed set: keep the stream open so the balancer keeps it.
        tx.closed().await;
    });
    UnboundedReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[&str]) -> Replicas {
        keys.iter()
            .map(|k| (ReplicaKey::new(k), "http://spin:80".parse().unwrap()))
            .collect()
    }

    #[test]
    fn a_new_resolution_changes_only_what_differs() {
        let old = set(&["10.0.0.1:80", "10.0.0.2:80"]);
        let new = set(&["10.0.0.2:80", "10.0.0.3:80"]);
        let changes: Vec<String> = changes(&old, &new)
            .into_iter()
            .map(|c| match c {
                Change::Insert(k, _) => format!("+{}", k.as_str()),
                Change::Remove(k) => format!("-{}", k.as_str()),
            })
            .collect();
        assert_eq!(changes, ["-10.0.0.1:80", "+10.0.0.3:80"]);
        assert!(super::changes(&new, &new).is_empty());
    }

    #[test]
    fn keys_split_into_address_and_port() {
        let v4 = ReplicaKey::of("127.0.0.1:3001".parse().unwrap());
        assert_eq!((v4.host(), v4.port()), ("127.0.0.1", 3001));
        let v6 = ReplicaKey::of("[::1]:3002".parse().unwrap());
        assert_eq!(
            (v6.host(), v6.port(), v6.as_str()),
            ("::1", 3002, "[::1]:3002")
        );
        assert_eq!(
            listed(&"http://spin.ns.svc".parse().unwrap()).as_str(),
            "spin.ns.svc:80"
        );
    }

    #[tokio::test]
    async fn literal_addresses_are_not_resolved_and_names_are() {
        let upstreams: Vec<Uri> = vec![
            "http://127.0.0.1:3001".parse().unwrap(),
            "http://localhost:3002".parse().unwrap(),
        ];
        let fixed = resolve(&upstreams, false, &Replicas::new()).await;
        let keys: Vec<&str> = fixed.keys().map(ReplicaKey::as_str).collect();
        assert_eq!(keys, ["127.0.0.1:3001", "localhost:3002"]);
        let resolved = resolve(&upstreams, true, &Replicas::new()).await;
        assert!(resolved.contains_key(&ReplicaKey::new("127.0.0.1:3001")));
        assert!(
            resolved.keys().all(|k| k.as_str() != "localhost:3002"),
            "a name stands for its addresses: {resolved:?}"
        );
        assert!(resolved.keys().any(|k| k.port() == 3002), "{resolved:?}");
    }
}
