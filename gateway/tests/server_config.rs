//! The `[server]` limits: defaults, ranges and typos, with the error text
//! (file, line, field) checked, as for every other config section.

use std::path::Path;
use std::time::Duration;

use gateway::config::{Config, ConfigError, ServerLimits};

const ROUTE: &str = "[[route]]\nname = \"list\"\nmatch = { method = \"GET\", path = \"/items\" }\nspin_path = \"/list\"\n";

fn parse(server: &str) -> Result<Config, ConfigError> {
    Config::parse(
        &format!("[server]\n{server}\n{ROUTE}"),
        Path::new("gw.toml"),
    )
}

fn refused(server: &str, field: &str, needle: &str) {
    let err = parse(server).expect_err(server).to_string();
    assert!(err.starts_with("gw.toml:2:"), "{err}");
    assert!(err.contains(field), "{err}");
    assert!(err.contains(needle), "{err}");
}

#[test]
fn defaults_apply_when_left_out() {
    let config = parse("").unwrap();
    assert_eq!(config.server, ServerLimits::default());
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(config.server.body_read_timeout, Duration::from_secs(30));
    assert_eq!(config.server.drain, Duration::from_secs(10));
    assert_eq!(config.server.max_in_flight, 1024);
    assert_eq!(config.server.max_buffered_bytes, 256 << 20);
    assert_eq!(Config::builtin().unwrap().server, ServerLimits::default());
}

#[test]
fn values_land_in_the_typed_config() {
    let config = parse(
        "header_read_timeout_ms = 1500\nbody_read_timeout_ms = 2500\nmax_in_flight = 7\n\
         max_buffered_bytes = 4096\ndrain_ms = 0",
    )
    .unwrap();
    assert_eq!(
        config.server,
        ServerLimits {
            header_read_timeout: Duration::from_millis(1500),
            body_read_timeout: Duration::from_millis(2500),
            max_in_flight: 7,
            max_buffered_bytes: 4096,
            drain: Duration::ZERO,
        }
    );
}

#[test]
fn every_field_is_range_checked() {
    for (field, bad) in [
        ("header_read_timeout_ms", "0"),
        ("header_read_timeout_ms", "3600001"),
        ("body_read_timeout_ms", "0"),
        ("body_read_timeout_ms", "-5"),
        ("max_in_flight", "0"),
        ("max_in_flight", "1000001"),
        ("max_buffered_bytes", "0"),
        ("drain_ms", "-1"),
        ("drain_ms", "3600001"),
    ] {
        refused(
            &format!("{field} = {bad}"),
            &format!("server.{field}"),
            "out of range",
        );
    }
    refused("drain_ms = \"10s\"", "(syntax)", "expected i64");
    let err = parse("drain_secs = 10").unwrap_err().to_string();
    assert!(err.contains("drain_secs"), "{err}");
}
