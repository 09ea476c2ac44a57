//! The gateway.toml that `deploy/kubernetes` puts in the gateway's ConfigMap
//! is one the gateway accepts, and it says what the manifests rely on:
//! external mode in front of the SpinApp's pods (a headless Service,
//! re-resolved so each pod is a replica), listeners on every pod
//! address, the drain the pod's grace period is sized for, and the same
//! routes as the built-in config.

use std::path::Path;
use std::time::Duration;

use gateway::config::{Config, SpinMode};

fn kubernetes_config() -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/base/gateway.toml");
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_kubernetes_config_is_accepted_and_fronts_the_spinapp_pods() {
    let config = kubernetes_config();
    assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(config.admin_listen, "0.0.0.0:9090".parse().unwrap());
    assert_eq!(config.server.drain, Duration::from_millis(10_000));
    assert_eq!(config.server.max_buffered_bytes, 128 << 20);
    match &config.spin {
        SpinMode::External {
            upstreams,
            resolve_every,
            ..
        } => {
            assert_eq!(upstreams.len(), 1, "{upstreams:?}");
            assert_eq!(upstreams[0].host(), Some("items-pods"));
            assert_eq!(upstreams[0].port_u16(), Some(80));
            assert_eq!(*resolve_every, Some(Duration::from_millis(5_000)));
        }
        other => panic!("want external mode, got {other:?}"),
    }
}

#[test]
fn the_kubernetes_config_has_the_built_in_routes() {
    // Per-route buffer caps default to half the server-wide cap, which the
    // cluster config sets lower; everything else must be the same.
    let without_caps = |config: Config| -> Vec<_> {
        config
            .routes
            .into_iter()
            .map(|mut route| {
                route.max_buffered_bytes = 0;
                route
            })
            .collect()
    };
    let builtin = Config::builtin().unwrap();
    assert_eq!(without_caps(kubernetes_config()), without_caps(builtin));
}
