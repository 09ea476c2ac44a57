//! The gateway: one binary in front of a Spin application.
//!
//! Read it top-down, one concern per module:
//!
//! * [`cli`] – the command line.
//! * [`config`] – the route-level config file, parsed and validated.
//! * [`runtime`] – the running snapshot of a config, and hot reload.
//! * [`routing`] – method + path to a configured route.
//! * [`backend`] – who serves a request (the [`backend::Backend`] enum),
//!   what they are handed and how they fail: the words every layer shares.
//! * [`admission`] – what the gateway lets in: in-flight caps, byte
//!   budgets, body deadlines; the top layer of every route's stack.
//! * [`fallback`] – the policy layers of a route's stack: backend choice
//!   (Spin, native, or Spin with a native fallback), concurrency limit,
//!   circuit breaker, retries, timeouts.
//! * [`spin`] – the Spin backend, embedded (the `spin-host` crate runs the
//!   components in-process) or external ([`proxy`] to running `spin up`
//!   replicas: discovery, p2c balancing, outlier ejection, retries elsewhere).
//! * [`native`] – handlers compiled from the same core crate as the components.
//! * [`server`] – the public and admin listeners (with `/metrics` and the
//!   built-in `/dashboard`).
//! * [`telemetry`] – traces, metrics and dashboard statistics comparing the
//!   Wasm and native paths.
//! * [`shadow`] – sampled replays on the other path, compared off the
//!   request path (a layer of the routes that sample).
//! * [`problem`] – RFC 9457 errors produced by the gateway itself.

pub mod admission;
pub mod backend;
pub mod cli;
pub mod config;
pub mod fallback;
pub mod native;
pub mod problem;
pub mod proxy;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod shadow;
pub mod spin;
pub mod telemetry;
