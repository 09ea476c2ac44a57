//! The recorder under a local subscriber, with a store of its own.

use super::*;
use tracing_subscriber::layer::SubscriberExt;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn new_store() -> &'static TraceStore {
    Box::leak(Box::new(TraceStore::new()))
}

/// Runs `f` with a subscriber whose only layer records into `store`.
fn with_recorder<R>(store: &'static TraceStore, sample_one_in: u32, f: impl FnOnce() -> R) -> R {
    let subscriber =
        tracing_subscriber::registry().with(layer_for(store, sample_one_in, false, None));
    tracing::subscriber::with_default(subscriber, f)
}

fn headers(traceparent: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(tp) = traceparent {
        h.insert("traceparent", tp.parse().unwrap());
    }
    h
}

/// A request like the server's: root span, a `spin` child with a
/// `wasm.handle` grandchild, fields recorded after creation.
fn request(store: &'static TraceStore, h: &HeaderMap, route: &str, backend: &str) -> bool {
    let armed = store.arm(h);
    let root = tracing::info_span!(
        "request",
        gateway.route = route,
        gateway.backend = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    drop(armed);
    let built = !root.is_disabled();
    root.in_scope(|| {
        let spin = tracing::info_span!("spin", gateway.attempt = 1i64);
        spin.in_scope(|| {
            let handle = tracing::info_span!("wasm.handle", wasm.component = "validate-items");
            drop(handle);
        });
    });
    root.record("gateway.backend", backend);
    root.record("http.response.status_code", 200i64);
    drop(root);
    built
}

#[test]
fn a_sampled_traceparent_is_recorded_with_its_trace_id_and_span_tree() {
    let store = new_store();
    let tp = format!("00-{CLIENT_TRACE}-00f067aa0ba902b7-01");
    with_recorder(store, 0, || {
        request(store, &headers(Some(&tp)), "validate", "spin-embedded")
    });
    let found = store.find(&Query::default());
    assert_eq!(found.len(), 1);
    let t = &found[0];
    assert_eq!(t.trace_id, CLIENT_TRACE);
    assert_eq!(t.recorded_because, Reason::Sampled);
    assert_eq!(
        (t.route.as_str(), t.backend.as_str()),
        ("validate", "spin-embedded")
    );
    assert_eq!(t.status, Some(200));
    let names: Vec<&str> = t.spans.iter().map(|s| s.name).collect();
    assert_eq!(names, ["request", "spin", "wasm.handle"]);
    let (root, spin, handle) = (&t.spans[0], &t.spans[1], &t.spans[2]);
    assert_eq!(root.parent_span_id, None);
    assert_eq!(spin.parent_span_id.as_ref(), Some(&root.span_id));
    assert_eq!(handle.parent_span_id.as_ref(), Some(&spin.span_id));
    assert_eq!(handle.attributes["wasm.component"], "validate-items");
    assert_eq!(spin.attributes["gateway.attempt"], 1);
    assert!(spin.start_ms >= root.start_ms && handle.start_ms >= spin.start_ms);
    assert_eq!(root.start_ms, 0.0);
    assert!(spin.start_ms + spin.duration_ms <= root.duration_ms);
    assert_eq!(root.span_id.len(), 16);
}

#[test]
fn unsampled_requests_build_no_span_at_all() {
    let store = new_store();
    let tp = format!("00-{CLIENT_TRACE}-00f067aa0ba902b7-00");
    let built = with_recorder(store, 0, || {
        [
            request(store, &headers(None), "validate", "native"),
            request(store, &headers(Some(&tp)), "validate", "native"),
        ]
    });
    assert_eq!(
        built,
        [false, false],
        "a span was built for an unrecorded request"
    );
    assert!(store.find(&Query::default()).is_empty());
}

#[test]
fn a_viewer_makes_every_request_recorded_for_a_while() {
    let store = new_store();
    store.viewer_seen();
    let built = with_recorder(store, 0, || {
        request(store, &headers(None), "items", "native")
    });
    assert!(built);
    let found = store.find(&Query::default());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].recorded_because, Reason::Viewer);
    assert_eq!(found[0].trace_id.len(), 32);
    // The window ends: back to not recording.
    store.viewer_until_ms.store(1, Ordering::Relaxed);
    let built = with_recorder(store, 0, || {
        request(store, &headers(None), "items", "native")
    });
    assert!(!built);
}

#[test]
fn the_head_sample_records_one_in_n() {
    let store = new_store();
    let built: Vec<bool> = with_recorder(store, 4, || {
        (0..12)
            .map(|_| request(store, &headers(None), "items", "native"))
            .collect()
    });
    assert_eq!(built.iter().filter(|b| **b).count(), 3, "{built:?}");
    assert!(
        store
            .find(&Query::default())
            .iter()
            .all(|t| t.recorded_because == Reason::HeadSample)
    );
}

#[test]
fn a_detached_child_joins_its_parent_s_trace() {
    let store = new_store();
    store.viewer_seen();
    with_recorder(store, 0, || {
        let armed = store.arm(&headers(None));
        let root = tracing::info_span!(
            "request",
            gateway.route = "validate",
            http.response.status_code = tracing::field::Empty,
        );
        drop(armed);
        // The shadow worker: no current span, an explicit parent.
        let shadow = tracing::info_span!(parent: &root, "shadow", gateway.shadow.match = true);
        root.record("http.response.status_code", 200i64);
        shadow.in_scope(|| drop(tracing::info_span!("native.compute")));
        drop(shadow);
        drop(root);
        // A shadow span whose parent was not recorded is not kept.
        let orphan = tracing::info_span!(parent: None, "shadow");
        drop(orphan);
    });
    let found = store.find(&Query::default());
    assert_eq!(found.len(), 1);
    let names: Vec<&str> = found[0].spans.iter().map(|s| s.name).collect();
    assert_eq!(names, ["request", "shadow", "native.compute"]);
    assert_eq!(found[0].spans[1].attributes["gateway.shadow.match"], true);
    // The root ended with its answer; the shadow ran on after it.
    let (root, shadow) = (&found[0].spans[0], &found[0].spans[1]);
    assert!(shadow.start_ms + shadow.duration_ms >= root.duration_ms);
    assert_eq!(found[0].duration_ms, root.duration_ms);
}

#[test]
fn spans_and_attribute_bytes_per_trace_are_bounded() {
    let store = new_store();
    store.viewer_seen();
    with_recorder(store, 0, || {
        let armed = store.arm(&headers(None));
        let root = tracing::info_span!("request", gateway.route = "validate");
        drop(armed);
        let long = "x".repeat(10_000);
        root.in_scope(|| {
            for _ in 0..MAX_SPANS - 1 + 10 {
                drop(tracing::info_span!("spin", url.path = %long));
            }
        });
    });
    let t = &store.find(&Query::default())[0];
    assert_eq!(t.spans.len(), MAX_SPANS);
    assert_eq!(t.dropped_spans, 10);
    let bytes: usize = t
        .spans
        .iter()
        .flat_map(|s| s.attributes.values())
        .map(|v| v.as_str().map_or(8, str::len))
        .sum();
    assert!(
        bytes <= MAX_ATTR_BYTES + MAX_SPANS * 4,
        "{bytes} attribute bytes kept"
    );
    let first = t.spans[1].attributes["url.path"].as_str().unwrap();
    assert!(
        first.len() <= MAX_VALUE_BYTES + '…'.len_utf8(),
        "{}",
        first.len()
    );
}

#[test]
fn the_slowest_per_route_and_backend_outlive_the_recent_ring() {
    let store = new_store();
    let publish = |route: &str, ms: f64, n: u64| {
        store.live.fetch_add(1, Ordering::Relaxed);
        store.publish(Trace {
            trace_id: format!("{n:032x}"),
            recorded_because: Reason::HeadSample,
            started_unix_ms: n,
            duration_ms: ms,
            route: route.to_string(),
            backend: "native".to_string(),
            status: Some(200),
            dropped_spans: 0,
            spans: Vec::new(),
        });
    };
    publish("validate", 900.0, 1);
    publish("validate", 800.0, 2);
    publish("validate", 700.0, 3);
    publish("validate", 750.0, 4); // pushes 700 out of the slowest three
    for n in 0..RECENT as u64 {
        publish("items", 1.0, 100 + n);
    }
    let all = store.find(&Query {
        limit: RECENT,
        ..Query::default()
    });
    assert_eq!(
        all.len(),
        RECENT,
        "recent ring plus kept slowest, cut at the limit"
    );
    let slowest = store.find(&Query {
        route: Some("validate".into()),
        slowest: true,
        ..Query::default()
    });
    let ms: Vec<f64> = slowest.iter().map(|t| t.duration_ms).collect();
    assert_eq!(ms, [900.0, 800.0, 750.0]);
    let over = store.find(&Query {
        min_ms: 790.0,
        ..Query::default()
    });
    assert_eq!(over.len(), 2);
    let one = store.find(&Query {
        trace_id: Some(format!("{:032x}", 2)),
        ..Query::default()
    });
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].duration_ms, 800.0);
}

#[test]
fn the_rate_cap_holds_per_second() {
    let store = new_store();
    let admitted = |second: u64| {
        (0..MAX_PER_SECOND + 50)
            .filter(|_| store.within_rate_at(second))
            .count() as u64
    };
    assert_eq!(admitted(7), MAX_PER_SECOND);
    // A new second, a new allowance.
    assert_eq!(admitted(8), MAX_PER_SECOND);
}

#[test]
fn query_parameters_are_checked() {
    let parse = |pairs: &[(&str, &str)]| {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Query::parse(&map)
    };
    let ok = parse(&[
        ("route", "validate"),
        ("backend", "native"),
        ("min_ms", "2.5"),
        ("trace_id", "4BF92F3577B34DA6A3CE929D0E0E4736"),
        ("order", "slowest"),
        ("limit", "10"),
    ])
    .unwrap();
    assert_eq!(ok.trace_id.as_deref(), Some(CLIENT_TRACE));
    assert!(ok.slowest);
    assert_eq!((ok.min_ms, ok.limit), (2.5, 10));
    for (pairs, needle) in [
        (vec![("min_ms", "-1")], "min_ms"),
        (vec![("min_ms", "NaN")], "min_ms"),
        (vec![("limit", "0")], "limit"),
        (vec![("limit", "257")], "limit"),
        (vec![("trace_id", "abc")], "trace_id"),
        (
            vec![("trace_id", "00000000000000000000000000000000")],
            "trace_id",
        ),
        (vec![("order", "fastest")], "order"),
        (vec![("route", "")], "route"),
        (vec![("colour", "red")], "unknown parameter `colour`"),
    ] {
        let err = parse(&pairs).unwrap_err();
        assert!(err.contains(needle), "{pairs:?}: {err}");
    }
}

#[test]
fn with_export_on_the_ids_are_opentelemetry_s() {
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let store = new_store();
    store.viewer_seen();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(layer_for(store, 0, true, None))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let (trace_id, span_id, unrecorded_built) =
        tracing::subscriber::with_default(subscriber, || {
            let armed = store.arm(&headers(None));
            let root = tracing::info_span!("request", gateway.route = "validate");
            drop(armed);
            let cx = root.context();
            let ids = cx.span().span_context().clone();
            drop(root);
            // Export on: spans of unrecorded requests are still built (for the
            // exporter), just not kept here.
            store.viewer_until_ms.store(1, Ordering::Relaxed);
            let armed = store.arm(&headers(None));
            let other = tracing::info_span!("request", gateway.route = "validate");
            drop(armed);
            (ids.trace_id(), ids.span_id(), !other.is_disabled())
        });
    let found = store.find(&Query::default());
    assert_eq!(found.len(), 1, "only the recorded request is kept");
    assert_eq!(found[0].trace_id, format!("{trace_id}"));
    assert_eq!(found[0].spans[0].span_id, format!("{span_id}"));
    assert!(unrecorded_built, "the exporter's spans were turned down");
}
