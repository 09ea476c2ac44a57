//! The `gateway` binary. See the library's docs for the tour.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use gateway::cli::{Cli, Command, ServeSpinArgs};
use gateway::runtime::Gateway;
use gateway::server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let otlp = gateway::telemetry::OtlpTarget::from_env().map_err(|e| anyhow::anyhow!(e))?;
    let tracing_guard = gateway::telemetry::init(otlp.as_ref())?;
    let result = match cli.command {
        Some(Command::ServeSpin(args)) => serve_spin(args).await,
        None => run(cli.run).await,
    };
    if let Err(e) = &result {
        eprintln!("Error: {e:?}");
    }
    // Flush spans, then exit here rather than returning: returning would
    // drop the runtime, which waits for every task, including a component
    // still spinning in a request that the drain deadline cut off.
    drop(tracing_guard);
    std::process::exit(if result.is_ok() { 0 } else { 1 });
}

async fn run(args: gateway::cli::RunArgs) -> anyhow::Result<()> {
    let overrides = args.overrides();
    let source = args.config.clone();
    let gateway = tokio::task::spawn_blocking(move || Gateway::start(source, overrides)).await??;
    let gateway = Arc::new(gateway);
    let config = gateway.current().config.clone();

    let public = bind(config.listen, "public").await?;
    let admin = bind(config.admin_listen, "admin").await?;
    tracing::info!(
        public = %config.listen,
        admin = %config.admin_listen,
        backend = gateway.current().spin.label(),
        "gateway serving"
    );
    reload_on_sighup(gateway.clone());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        server::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut public_stop = stop_rx.clone();
    let mut admin_stop = stop_rx;
    // Both listeners close on the signal; requests in flight get
    // `[server] drain_ms` to finish, then are cut off.
    let limits = &config.server;
    let public_server = server::serve_with(
        public,
        server::public_router(gateway.clone()),
        limits,
        async move {
            let _ = public_stop.wait_for(|stop| *stop).await;
        },
    );
    let admin_server = server::serve_with(
        admin,
        server::admin::admin_router(gateway.clone()),
        limits,
        async move {
            let _ = admin_stop.wait_for(|stop| *stop).await;
        },
    );
    let (public_result, admin_result) = tokio::join!(public_server, admin_server);
    gateway.metrics.shutdown();
    let public = public_result?;
    let admin = admin_result?;
    tracing::info!(cut_off = public.cut_off + admin.cut_off, "gateway stopped");
    Ok(())
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({what}): {e}"))
}

/// SIGHUP re-reads the config file, like most Unix daemons.
fn reload_on_sighup(gateway: Arc<Gateway>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::error!("cannot listen for SIGHUP; reload with POST /admin/config/reload");
            return;
        };
        while hup.recv().await.is_some() {
            let gw = gateway.clone();
            match tokio::task::spawn_blocking(move || gw.reload()).await {
                Ok(Ok(report)) => tracing::info!(?report, "configuration reloaded (SIGHUP)"),
                Ok(Err(e)) => tracing::error!(
                    "configuration reload refused, keeping the running config: {e:#}"
                ),
                Err(e) => tracing::error!("reload task failed: {e}"),
            }
        }
    });
}

async fn serve_spin(args: ServeSpinArgs) -> anyhow::Result<()> {
    let ids = spin_host::SpinApp::manifest_component_ids(&args.manifest)?;
    let router =
        gateway::spin::embedded::standalone_router(&args.manifest, args.host_config(&ids))?;
    let listener = bind(args.listen, "spin").await?;
    tracing::info!(
        "serving {} like `spin up` on http://{}",
        args.manifest.display(),
        args.listen
    );
    server::serve(listener, router, server::shutdown_signal()).await?;
    Ok(())
}
