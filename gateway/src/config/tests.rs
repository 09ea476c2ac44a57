//! Every field of the config file, accepted and refused at its boundaries,
//! with the error text (file, line, field, reason) checked.

use std::path::Path;
use std::time::Duration;

use super::route::DEFAULT_SHADOW_SAMPLE;
use super::*;

const FILE: &str = "gw.toml";

/// A minimal valid file: one spin route, one auto route.
fn base(route_extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:9090"

[spin]
mode = "embedded"
manifest = "spin.toml"

[[route]]
name = "list"
match = {{ method = "GET", path = "/items" }}
spin_path = "/list"

[[route]]
name = "validate"
match = {{ method = "POST", path = "/validate" }}
backend = "auto"
spin_path = "/validate"
native = "validate"
{route_extra}
"#
    )
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(FILE))
}

/// Asserts the text is refused at `line` for `field`, mentioning `needle`.
#[track_caller]
fn refused(text: &str, line: usize, field: &str, needle: &str) {
    match parse(text) {
        Ok(_) => panic!("accepted, expected `{field}` to be refused:\n{text}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{FILE}:{line}:")),
                "line {line} in: {msg}"
            );
            assert!(
                msg.contains(&format!("`{field}`")),
                "field `{field}` in: {msg}"
            );
            assert!(msg.contains(needle), "`{needle}` in: {msg}");
        }
    }
}

fn validate_route(text: &str) -> RouteConfig {
    match parse(text) {
        Ok(config) => config.route("validate").cloned().expect("validate route"),
        Err(e) => panic!("refused: {e}\n{text}"),
    }
}

#[test]
fn the_built_in_config_is_valid_and_matches_the_documented_defaults() {
    let config = Config::builtin().unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.admin_listen.to_string(), "127.0.0.1:9090");
    assert!(matches!(config.spin, SpinMode::Embedded { .. }));
    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["list", "get", "create", "validate"]);
    let validate = config.route("validate").unwrap();
    assert_eq!(validate.backend, BackendKind::Auto);
    assert_eq!(validate.native_above_bytes, Some(262_144));
    assert_eq!(validate.fallback_on, FallbackTrigger::ALL.to_vec());
    assert_eq!(config.route("list").unwrap().retry.attempts, 2);
}

#[test]
fn defaults_fill_what_a_route_leaves_out() {
    let config = parse(&base("")).unwrap();
    let list = config.route("list").unwrap();
    assert_eq!(list.backend, BackendKind::Spin);
    assert_eq!(list.method, http::Method::GET);
    assert_eq!(list.timeout, Duration::from_secs(30));
    assert_eq!(list.max_body_bytes, 1 << 20);
    assert_eq!(list.concurrency, 256);
    assert_eq!(list.max_in_flight, 512, "half the gateway's 1024");
    assert_eq!(
        list.max_buffered_bytes,
        128 << 20,
        "half the gateway's 256 MiB"
    );
    assert_eq!(list.retry.attempts, 0);
    assert_eq!(list.circuit.consecutive_failures, 5);
    assert_eq!(list.circuit.failure_rate, 0.5);
    assert!(list.fallback_on.is_empty());
    let validate = config.route("validate").unwrap();
    assert_eq!(
        validate.fallback_on,
        FallbackTrigger::ALL.to_vec(),
        "auto falls back on everything by default"
    );
    assert_eq!(validate.native_above_bytes, None);
}

#[test]
fn every_numeric_field_is_checked_at_its_boundaries() {
    // (field as written, dotted name, min, max)
    let cases: [(&str, &str, i64, i64); 14] = [
        ("timeout_ms", "timeout_ms", 1, 600_000),
        // A route's budgets are at most the gateway's (the defaults here).
        ("max_in_flight", "max_in_flight", 1, 1024),
        ("max_buffered_bytes", "max_buffered_bytes", 1, 256 << 20),
        ("max_body_bytes", "max_body_bytes", 0, 1 << 30),
        ("concurrency", "concurrency", 1, 100_000),
        ("retry.attempts", "retry.attempts", 0, 5),
        ("retry.backoff_ms", "retry.backoff_ms", 1, 10_000),
        ("retry.budget_percent", "retry.budget_percent", 1, 100),
        (
            "circuit.consecutive_failures",
            "circuit.consecutive_failures",
            1,
            1_000,
        ),
        ("circuit.min_requests", "circuit.min_requests", 1, 100_000),
        ("circuit.window_ms", "circuit.window_ms", 100, 3_600_000),
        ("circuit.open_ms", "circuit.open_ms", 10, 3_600_000),
        (
            "circuit.half_open_probes",
            "circuit.half_open_probes",
            1,
            100,
        ),
        (
            "fallback.native_above_bytes",
            "fallback.native_above_bytes",
            0,
            1 << 30,
        ),
    ];
    for (key, field, min, max) in cases {
        let line_of = |value: i64| match key.split_once('.') {
            Some((table, leaf)) => format!("[route.{table}]\n{leaf} = {value}"),
            None => format!("{key} = {value}"),
        };
        for ok in [min, max] {
            validate_route(&base(&line_of(ok)));
        }
        for bad in [min - 1, max + 1] {
            let text = base(&line_of(bad));
            // The value sits on the last line of the file.
            let line = text.lines().count();
            refused(&text, line, &format!("route[1].{field}"), "out of range");
        }
    }
}

#[test]
fn route_budgets_follow_the_gateway_budgets() {
    let text = base("max_in_flight = 9").replacen(
        "[server]\n",
        "[server]\nmax_in_flight = 10\nmax_buffered_bytes = 1001\n",
        1,
    );
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let list = config.route("list").unwrap();
    assert_eq!((list.max_in_flight, list.max_buffered_bytes), (5, 501));
    assert_eq!(config.route("validate").unwrap().max_in_flight, 9);
    let over =
        base("max_in_flight = 11").replacen("[server]\n", "[server]\nmax_in_flight = 10\n", 1);
    let line = over.lines().count();
    refused(&over, line, "route[1].max_in_flight", "expected 1 to 10");
}

#[test]
fn numeric_fields_land_in_the_typed_config() {
    let route = validate_route(&base(
        "timeout_ms = 1500\nmax_body_bytes = 10\nconcurrency = 3\n\
         retry = { attempts = 2, backoff_ms = 7, budget_percent = 50 }\n\
         circuit = { consecutive_failures = 4, failure_rate = 0.25, min_requests = 9, window_ms = 1000, open_ms = 20, half_open_probes = 3 }\n\
         fallback = { on = [\"timeout\", \"5xx\"], native_above_bytes = 99 }",
    ));
    assert_eq!(route.timeout, Duration::from_millis(1500));
    assert_eq!(route.max_body_bytes, 10);
    assert_eq!(route.concurrency, 3);
    assert_eq!(route.retry.attempts, 2);
    assert_eq!(route.retry.backoff, Duration::from_millis(7));
    assert_eq!(route.retry.budget_ratio, 0.5);
    assert_eq!(route.circuit.consecutive_failures, 4);
    assert_eq!(route.circuit.failure_rate, 0.25);
    assert_eq!(route.circuit.min_requests, 9);
    assert_eq!(route.circuit.window, Duration::from_secs(1));
    assert_eq!(route.circuit.open_for, Duration::from_millis(20));
    assert_eq!(route.circuit.half_open_probes, 3);
    assert_eq!(
        route.fallback_on,
        vec![FallbackTrigger::Timeout, FallbackTrigger::ServerError]
    );
    assert_eq!(route.native_above_bytes, Some(99));
}

#[test]
fn failure_rate_must_be_a_fraction() {
    for ok in ["1.0", "0.01"] {
        validate_route(&base(&format!("[route.circuit]\nfailure_rate = {ok}")));
    }
    for bad in ["0.0", "1.5", "-0.1"] {
        let text = base(&format!("[route.circuit]\nfailure_rate = {bad}"));
        let line = text.lines().count();
        refused(&text, line, "route[1].circuit.failure_rate", "fraction");
    }
}

#[test]
fn listeners_must_be_socket_addresses_and_differ() {
    let text = base("").replace("listen = \"127.0.0.1:8080\"", "listen = \"localhost\"");
    refused(&text, 2, "server.listen", "IP:port");
    let text = base("").replace("\"127.0.0.1:9090\"", "\"127.0.0.1:99999\"");
    refused(&text, 3, "server.admin_listen", "IP:port");
    let text = base("").replace("127.0.0.1:9090", "127.0.0.1:8080");
    refused(&text, 3, "server.admin_listen", "must differ");
}

/// `[spin]` in external mode with `extra` lines after `mode`.
fn external_with(extra: &str) -> String {
    base("").replace(
        "mode = \"embedded\"",
        &format!("mode = \"external\"\n{extra}"),
    )
}

#[test]
fn several_upstreams_a_resolved_name_and_outlier_detection_are_read() {
    let text = external_with(
        "upstream = [\"http://127.0.0.1:3001\", \"http://127.0.0.1:3002\", \"http://spin.ns.svc:80\"]\n\
         resolve_every_ms = 5000\n\
         outlier = { consecutive_failures = 3, max_ejected_percent = 34, probe_every_ms = 250 }",
    );
    let config = parse(&text).unwrap();
    let SpinMode::External {
        upstreams,
        resolve_every,
        outlier,
    } = &config.spin
    else {
        panic!("expected external: {:?}", config.spin);
    };
    let listed: Vec<String> = upstreams.iter().map(|u| u.to_string()).collect();
    assert_eq!(
        listed,
        [
            "http://127.0.0.1:3001/",
            "http://127.0.0.1:3002/",
            "http://spin.ns.svc:80/"
        ]
    );
    assert_eq!(*resolve_every, Some(Duration::from_millis(5000)));
    assert_eq!(outlier.consecutive_failures, 3);
    assert_eq!(outlier.max_ejected_percent, 34);
    assert_eq!(outlier.probe_every, Duration::from_millis(250));
    // A single string is still one upstream, with the defaults.
    let config = parse(&external_with("upstream = \"http://127.0.0.1:3000\"")).unwrap();
    let SpinMode::External {
        upstreams,
        resolve_every,
        outlier,
    } = &config.spin
    else {
        panic!("expected external");
    };
    assert_eq!(upstreams.len(), 1);
    assert_eq!(*resolve_every, None);
    assert_eq!(outlier.consecutive_failures, 5);
    assert_eq!(outlier.max_ejected_percent, 50);
}

#[test]
fn bad_upstream_lists_and_outlier_settings_are_refused() {
    refused(
        &external_with("upstream = []"),
        7,
        "spin.upstream",
        "list is empty",
    );
    refused(
        &external_with("upstream = [\"http://127.0.0.1:3001\", 3001]"),
        7,
        "spin.upstream[1]",
        "found a integer",
    );
    refused(
        &external_with("upstream = [\"http://127.0.0.1:3001\", \"https://a\"]"),
        7,
        "spin.upstream[1]",
        "only http://",
    );
    refused(
        &external_with("upstream = [\"http://a:80\", \"http://A\"]"),
        7,
        "spin.upstream[1]",
        "listed twice",
    );
    refused(
        &external_with("upstream = 3000"),
        7,
        "spin.upstream",
        "expected a URL",
    );
    let many: Vec<String> = (0..65)
        .map(|i| format!("\"http://127.0.0.1:{}\"", 3000 + i))
        .collect();
    refused(
        &external_with(&format!("upstream = [{}]", many.join(", "))),
        7,
        "spin.upstream",
        "at most 64",
    );
    let with =
        |extra: &str| external_with(&format!("upstream = \"http://127.0.0.1:3000\"\n{extra}"));
    refused(
        &with("resolve_every_ms = 10"),
        8,
        "spin.resolve_every_ms",
        "expected 100 to 3600000",
    );
    refused(
        &with("outlier = { consecutive_failures = 0 }"),
        8,
        "spin.outlier.consecutive_failures",
        "expected 1 to 1000",
    );
    refused(
        &with("outlier = { max_ejected_percent = 101 }"),
        8,
        "spin.outlier.max_ejected_percent",
        "expected 0 to 100",
    );
    refused(
        &with("outlier = { probe_every_ms = 1 }"),
        8,
        "spin.outlier.probe_every_ms",
        "expected 10 to",
    );
    refused(
        &with("outlier = { every = 1 }"),
        8,
        "every",
        "unknown field",
    );
}

#[test]
fn spin_modes_are_checked() {
    let text = base("").replace("mode = \"embedded\"", "mode = \"cloud\"");
    refused(&text, 6, "spin.mode", "\"embedded\" or \"external\"");
    let text = base("").replace("mode = \"embedded\"", "mode = \"external\"");
    refused(&text, 6, "spin.upstream", "needs an upstream");
    let external = |url: &str| {
        base("").replace(
            "mode = \"embedded\"",
            &format!("mode = \"external\"\nupstream = \"{url}\""),
        )
    };
    let config = parse(&external("http://127.0.0.1:3000")).unwrap();
    assert_eq!(
        config.spin,
        SpinMode::External {
            upstreams: vec!["http://127.0.0.1:3000".parse().unwrap()],
            resolve_every: None,
            outlier: crate::config::OutlierPolicy::default(),
        }
    );
    refused(
        &external("https://spin.example"),
        7,
        "spin.upstream",
        "only http://",
    );
    refused(
        &external("http://127.0.0.1:3000/base"),
        7,
        "spin.upstream",
        "must not have a path",
    );
    refused(&external("not a url"), 7, "spin.upstream", "not a URL");
    let text = base("").replace("manifest = \"spin.toml\"", "manifest = \"\"");
    refused(&text, 7, "spin.manifest", "must not be empty");
    let text = base("").replace("manifest = \"spin.toml\"", "component_timeout_ms = 0");
    refused(&text, 7, "spin.component_timeout_ms", "out of range");
    let text = base("").replace("manifest = \"spin.toml\"", "component_memory_mib = 65537");
    refused(&text, 7, "spin.component_memory_mib", "out of range");
}

#[test]
fn route_identity_is_checked() {
    let text = base("").replace("name = \"list\"", "name = \"List!\"");
    refused(&text, 10, "route[0].name", "lowercase");
    let text = base("").replace("name = \"validate\"", "name = \"list\"");
    refused(&text, 15, "route[1].name", "duplicate route name `list`");
    let text = base("").replace(
        "method = \"POST\", path = \"/validate\"",
        "method = \"GET\", path = \"/items\"",
    );
    refused(&text, 16, "route[1].match", "already matches GET /items");
    let text = base("").replace("method = \"GET\"", "method = \"TRACE\"");
    refused(&text, 11, "route[0].match.method", "not supported");
    let text = base("").replace("path = \"/items\"", "path = \"items\"");
    refused(&text, 11, "route[0].match.path", "must start with `/`");
    let text = base("").replace("path = \"/items\"", "path = \"/items/*rest\"");
    refused(&text, 11, "route[0].match.path", "whole-segment parameters");
    let text = base("").replace("spin_path = \"/list\"", "spin_path = \"/list/{id}\"");
    refused(&text, 12, "route[0].spin_path", "does not capture");
    let text = base("")
        .replace("path = \"/items\" }", "path = \"/items/{id}\" }")
        .replace("\"/list\"", "\"/list/{id}\"");
    let config = parse(&text).unwrap();
    assert_eq!(config.routes[0].spin_path.as_deref(), Some("/list/{id}"));
}

#[test]
fn backends_need_what_they_use() {
    let text = base("").replace("backend = \"auto\"", "backend = \"wasm\"");
    refused(
        &text,
        17,
        "route[1].backend",
        "\"spin\", \"native\" or \"auto\"",
    );
    let text = base("").replace("native = \"validate\"", "native = \"list\"");
    refused(&text, 19, "route[1].native", "no native handler `list`");
    let text = base("").replace("native = \"validate\"\n", "");
    refused(
        &text,
        15,
        "route[1].native",
        "required when backend is \"native\" or \"auto\"",
    );
    let text = base("").replace("spin_path = \"/validate\"\n", "");
    refused(
        &text,
        15,
        "route[1].spin_path",
        "required when backend is \"spin\" or \"auto\"",
    );
    // A native route needs no spin_path.
    let text = base("")
        .replace("backend = \"auto\"", "backend = \"native\"")
        .replace("spin_path = \"/validate\"\n", "");
    assert_eq!(validate_route(&text).backend, BackendKind::Native);
    // Fallback settings only make sense on auto routes.
    let text = base("").replace(
        "spin_path = \"/list\"",
        "spin_path = \"/list\"\nfallback = { on = [\"timeout\"] }",
    );
    refused(
        &text,
        13,
        "route[0].fallback",
        "only routes with backend = \"auto\"",
    );
}

#[test]
fn fallback_triggers_are_checked() {
    let text = base("[route.fallback]\non = [\"timeout\", \"meltdown\"]");
    refused(
        &text,
        text.lines().count(),
        "route[1].fallback.on",
        "`meltdown` is not a trigger",
    );
    let text = base("[route.fallback]\non = [\"timeout\", \"timeout\"]");
    refused(
        &text,
        text.lines().count(),
        "route[1].fallback.on",
        "listed twice",
    );
    let route = validate_route(&base("[route.fallback]\non = []"));
    assert!(
        route.fallback_on.is_empty(),
        "an empty list disables fallback"
    );
}

#[test]
fn unknown_fields_and_bad_syntax_name_the_place() {
    let text = base("timeout = 5");
    let line = text.lines().count();
    refused(&text, line, "timeout", "unknown field `timeout`");
    let text = base("").replace("[server]", "[server]\nport = 1");
    refused(&text, 2, "port", "unknown field `port`");
    let text = base("").replace("name = \"list\"\n", "");
    refused(&text, 9, "name", "missing field `name`");
    let text = base("timeout_ms = \"fast\"");
    refused(&text, text.lines().count(), "(syntax)", "invalid type");
    refused("[[route]\n", 1, "(syntax)", "");
    refused("", 1, "route", "at least one [[route]]");
}

#[test]
fn unreadable_files_name_the_file() {
    let e = Config::load(Path::new("/nonexistent/gw.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/gw.toml: cannot read"),
        "{e}"
    );
}

/// `[spin]` with `extra` lines, then two spin routes (concurrency 3 and 5)
/// and a native one (concurrency 7, which uses no instance).
fn pool_config(extra: &str) -> String {
    format!(
        r#"[spin]
mode = "embedded"
manifest = "spin.toml"
{extra}

[[route]]
name = "a"
match = {{ method = "GET", path = "/a" }}
spin_path = "/a"
concurrency = 3

[[route]]
name = "b"
match = {{ method = "GET", path = "/b" }}
spin_path = "/b"
concurrency = 5

[[route]]
name = "c"
match = {{ method = "POST", path = "/c" }}
backend = "native"
native = "validate"
concurrency = 7
"#
    )
}

fn embedded(config: &Config) -> (u32, BTreeMap<String, super::Reuse>) {
    match &config.spin {
        SpinMode::Embedded {
            max_instances,
            reuse,
            ..
        } => (*max_instances, reuse.clone()),
        SpinMode::External { .. } => panic!("expected embedded"),
    }
}

#[test]
fn the_instance_pool_defaults_to_the_spin_routes_total_concurrency() {
    let (max, reuse) = embedded(&parse(&pool_config("")).unwrap());
    assert_eq!(max, 3 + 5, "native routes use no instance");
    assert!(
        reuse.is_empty(),
        "fresh instances unless a component opts in"
    );
    let (max, _) = embedded(&parse(&pool_config("max_instances = 2")).unwrap());
    assert_eq!(max, 2, "an explicit size wins");
    refused(
        &pool_config("max_instances = 0"),
        4,
        "spin.max_instances",
        "out of range",
    );
    refused(
        &pool_config("max_instances = 100001"),
        4,
        "spin.max_instances",
        "out of range",
    );
}

#[test]
fn component_reuse_is_parsed_with_defaults_and_checked() {
    let text = pool_config(
        "[spin.component.validate]\nreuse = { max_requests = 64, idle_ms = 500 }\n\
         [spin.component.list]\nreuse = {}\n[spin.component.create]\n",
    );
    let (_, reuse) = embedded(&parse(&text).unwrap());
    assert_eq!(
        reuse["validate"],
        super::Reuse {
            max_requests: 64,
            idle: Duration::from_millis(500)
        }
    );
    assert_eq!(
        reuse["list"],
        super::Reuse {
            max_requests: super::DEFAULT_REUSE_MAX_REQUESTS,
            idle: Duration::from_millis(super::DEFAULT_REUSE_IDLE_MS)
        }
    );
    assert!(!reuse.contains_key("create"), "a table without reuse");
    refused(
        &pool_config("[spin.component.validate]\nreuse = { max_requests = 0 }"),
        5,
        "spin.component.validate.reuse.max_requests",
        "out of range",
    );
    refused(
        &pool_config("[spin.component.validate]\nreuse = { idle_ms = 3600001 }"),
        5,
        "spin.component.validate.reuse.idle_ms",
        "out of range",
    );
    refused(
        &pool_config("[spin.component.validate]\nreuse = { max_request = 3 }"),
        5,
        "max_request",
        "unknown field",
    );
}

#[test]
fn an_auto_route_shadows_one_percent_by_default_and_zero_turns_it_off() {
    assert_eq!(
        validate_route(&base("")).shadow_sample,
        DEFAULT_SHADOW_SAMPLE
    );
    assert_eq!(DEFAULT_SHADOW_SAMPLE, 0.01);
    let builtin = Config::builtin().unwrap();
    assert_eq!(builtin.route("validate").unwrap().shadow_sample, 0.01);
    // Spin-only routes have no second path to compare with.
    assert_eq!(builtin.route("list").unwrap().shadow_sample, 0.0);
    let off = validate_route(&base("shadow = { sample = 0 }"));
    assert_eq!(off.shadow_sample, 0.0);
    let all = validate_route(&base("shadow = { sample = 1.0 }"));
    assert_eq!(all.shadow_sample, 1.0);
    // A native route with both paths compares only when asked to.
    let native = base("").replace("backend = \"auto\"", "backend = \"native\"");
    assert_eq!(validate_route(&native).shadow_sample, 0.0);
}

#[test]
fn telemetry_section_sets_the_trace_sample_and_the_bench_report() {
    let defaults = parse(&base("")).unwrap().telemetry;
    assert_eq!(defaults, TelemetrySettings::default());
    assert_eq!(defaults.trace_sample, DEFAULT_TRACE_SAMPLE);
    assert_eq!(defaults.bench_report, Path::new(DEFAULT_BENCH_REPORT));

    let text = format!(
        "[telemetry]\ntrace_sample = 0\nbench_report = \"/srv/bench/report.json\"\n{}",
        base("")
    );
    let set = parse(&text).unwrap().telemetry;
    assert_eq!(set.trace_sample, 0);
    assert_eq!(set.bench_report, Path::new("/srv/bench/report.json"));

    for bad in ["-1", "1000001"] {
        refused(
            &format!("[telemetry]\ntrace_sample = {bad}\n{}", base("")),
            2,
            "telemetry.trace_sample",
            "out of range",
        );
    }
    refused(
        &format!("[telemetry]\nbench_report = \" \"\n{}", base("")),
        2,
        "telemetry.bench_report",
        "must name a file",
    );
    refused(
        &format!("[telemetry]\ntrace_samples = 1\n{}", base("")),
        2,
        "trace_samples",
        "unknown field",
    );
}

#[test]
fn the_runtime_config_file_is_for_the_embedded_host_only() {
    let with = |spin: &str| base("").replace("mode = \"embedded\"", spin);
    let config = parse(&with(
        "mode = \"embedded\"\nruntime_config_file = \"runtime-config.toml\"",
    ))
    .unwrap();
    match config.spin {
        SpinMode::Embedded {
            runtime_config_file,
            ..
        } => assert_eq!(
            runtime_config_file.as_deref(),
            Some(Path::new("runtime-config.toml"))
        ),
        SpinMode::External { .. } => panic!("expected embedded"),
    }
    match parse(&base("")).unwrap().spin {
        SpinMode::Embedded {
            runtime_config_file,
            ..
        } => assert_eq!(runtime_config_file, None),
        SpinMode::External { .. } => panic!("expected embedded"),
    }
    refused(
        &with("mode = \"embedded\"\nruntime_config_file = \"\""),
        7,
        "spin.runtime_config_file",
        "must name",
    );
    refused(
        &with(
            "mode = \"external\"\nupstream = \"http://127.0.0.1:3000\"\nruntime_config_file = \"rc.toml\"",
        ),
        8,
        "spin.runtime_config_file",
        "spin up --runtime-config-file",
    );
}

#[test]
fn native_above_bytes_may_be_learned() {
    let learn = validate_route(&base("[route.fallback]\nnative_above_bytes = \"learn\""));
    assert!(learn.learn);
    assert_eq!(learn.native_above_bytes, None);
    let fixed = validate_route(&base("[route.fallback]\nnative_above_bytes = 4096"));
    assert!(!fixed.learn);
    assert_eq!(fixed.native_above_bytes, Some(4096));
    let text = base("[route.fallback]\nnative_above_bytes = \"lean\"");
    let line = text.lines().count();
    refused(
        &text,
        line,
        "route[1].fallback.native_above_bytes",
        "neither a number of bytes nor \"learn\"",
    );
    let text = base("[route.fallback]\nnative_above_bytes = true");
    assert!(parse(&text).is_err(), "a boolean is refused");
}
