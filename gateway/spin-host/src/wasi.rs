//! The per-request store state and its locked-down WASI context.
//!
//! Each instance gets a fresh `HostState` (one per request unless its
//! component opted in to instance reuse): a WASI context with no preopened
//! directories, no inherited environment and no network, plus the wasi:http
//! context whose outbound requests are always refused. Only the component's
//! own `environment` entries and stdio (to the gateway's stderr/stdout) are
//! visible, which is the least a Spin component expects.
//!
//! The Spin interfaces' contexts sit in [`HostState::interfaces`], one
//! field per interface; each interface is linked to its own field (see
//! [`crate::interfaces`]), so nothing here knows what they contain.

use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use crate::limits::MemoryCap;
use crate::{Grants, InstanceContexts};

/// Everything the host knows about a component that requests need; shared by
/// all of its requests.
pub(crate) struct ComponentCtx {
    /// The component id.
    pub id: String,
    /// Environment variables from the manifest.
    pub environment: Vec<(String, String)>,
    /// What each host interface lets it use.
    pub grants: Grants,
}

/// The `T` of `Store<T>` for one request.
pub(crate) struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: DenyOutbound,
    /// Memory limits checked by the store's limiter.
    pub limits: MemoryCap,
    /// When the current request must be done (re-armed for every request
    /// a reused instance serves).
    pub deadline: Instant,
    /// The Spin interfaces' contexts, one field per interface.
    pub interfaces: InstanceContexts,
}

impl HostState {
    /// Builds the isolated state for one instance of `component` (one
    /// request, or several in turn when the component reuses instances).
    pub fn new(
        component: &ComponentCtx,
        interfaces: InstanceContexts,
        limits: MemoryCap,
    ) -> HostState {
        let mut builder = WasiCtx::builder();
        builder
            .inherit_stdout()
            .inherit_stderr()
            .envs(&component.environment)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        HostState {
            table: ResourceTable::new(),
            wasi: builder.build(),
            http: WasiHttpCtx::new(),
            hooks: DenyOutbound,
            limits,
            deadline: Instant::now(),
            interfaces,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// wasi:http hooks that refuse every outgoing request.
///
/// The embedded host only supports `allowed_outbound_hosts = []`; a component
/// that declares hosts still loads, but its requests fail with
/// `HttpRequestDenied` just as Spin denies hosts outside the allow-list.
pub(crate) struct DenyOutbound;

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        tracing::warn!(uri = %request.uri(), "outbound HTTP request denied by the embedded host");
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}
