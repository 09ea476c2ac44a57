//! A scriptable stand-in for an external Spin, to drive every failure the
//! gateway must handle: refused, hanging, 5xx, slow, flaky; it records what
//! it received so proxy hygiene can be checked.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::watch;

use super::{Served, serve};

/// How the fake answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 200 with a JSON echo of the request.
    Ok,
    /// 500 problem+json.
    Fail,
    /// Never answers (until the gate opens).
    Hang,
    /// Fails the next N requests, then answers Ok.
    FailFirst(usize),
    /// Sends `200` and the first bytes of the body at once, and the rest
    /// when the gate opens: an answer still streaming.
    HangBody,
}

pub struct FakeState {
    pub mode: Mutex<Mode>,
    pub hits: AtomicUsize,
    pub last_headers: Mutex<Option<http::HeaderMap>>,
    pub last_path: Mutex<Option<String>>,
    /// Headers added to every `Ok` answer (an upstream trying to speak for
    /// the gateway).
    pub extra_response_headers: Mutex<Vec<(String, String)>>,
    /// Opened by the test (`open_gate`) to release hanging requests.
    pub gate: watch::Sender<bool>,
}

pub struct FakeSpin {
    pub served: Served,
    pub state: Arc<FakeState>,
}

impl FakeSpin {
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }
    /// Releases every hanging request, now and later.
    pub fn open_gate(&self) {
        self.state.gate.send_replace(true);
    }
    /// Adds `name: value` to every `Ok` answer from now on.
    pub fn add_response_header(&self, name: &str, value: &str) {
        self.state
            .extra_response_headers
            .lock()
            .unwrap()
            .push((name.to_string(), value.to_string()));
    }
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
    pub fn last_headers(&self) -> http::HeaderMap {
        self.state
            .last_headers
            .lock()
            .unwrap()
            .clone()
            .expect("a request arrived")
    }
    pub fn last_path(&self) -> String {
        self.state
            .last_path
            .lock()
            .unwrap()
            .clone()
            .expect("a request arrived")
    }
}

pub async fn start(mode: Mode) -> FakeSpin {
    let state = Arc::new(FakeState {
        mode: Mutex::new(mode),
        hits: AtomicUsize::new(0),
        last_headers: Mutex::new(None),
        last_path: Mutex::new(None),
        extra_response_headers: Mutex::new(Vec::new()),
        gate: watch::channel(false).0,
    });
    let router = axum::Router::new()
        .fallback(handle)
        .with_state(state.clone());
    FakeSpin {
        served: serve(router).await,
        state,
    }
}

async fn handle(State(state): State<Arc<FakeState>>, request: Request) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    *state.last_headers.lock().unwrap() = Some(request.headers().clone());
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    *state.last_path.lock().unwrap() = Some(path_and_query.clone());
    let mode = {
        let mut mode = state.mode.lock().unwrap();
        let current = *mode;
        if let Mode::FailFirst(n) = current {
            *mode = if n <= 1 {
                Mode::Ok
            } else {
                Mode::FailFirst(n - 1)
            };
            Mode::Fail
        } else {
            current
        }
    };
    match mode {
        Mode::Ok | Mode::FailFirst(_) => {
            // Like Spin's trigger: its own `spin-path-info` goes *after*
            // whatever arrived, and a component reads the first value.
            let mut headers = request.headers().clone();
            headers.append("spin-path-info", http::HeaderValue::from_static("/fake"));
            let path_info = headers
                .get("spin-path-info")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = serde_json::json!({
                "fake": true,
                "path": path_and_query,
                "path_info": path_info,
            });
            let mut response = (
                [("content-type", "application/json")],
                serde_json::to_vec(&body).unwrap(),
            )
                .into_response();
            for (name, value) in state.extra_response_headers.lock().unwrap().iter() {
                response.headers_mut().append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(value).unwrap(),
                );
            }
            response
        }
        Mode::Fail => Response::builder()
            .status(500)
            .header("content-type", "application/problem+json")
            .body(Body::from(
                r#"{"type":"about:blank","title":"Boom","status":500,"detail":"fake failure"}"#,
            ))
            .unwrap(),
        Mode::HangBody => {
            let mut open = state.gate.subscribe();
            let rest = async move {
                let _ = tokio::time::timeout(Duration::from_secs(120), open.wait_for(|o| *o)).await;
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(b"released\"}"))
            };
            let first = futures_util::stream::once(async {
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(b"{\"fake\": \""))
            });
            let chunks = first.chain(futures_util::stream::once(rest));
            (
                [("content-type", "application/json")],
                Body::from_stream(chunks),
            )
                .into_response()
        }
        Mode::Hang => {
            let mut open = state.gate.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(120), open.wait_for(|o| *o)).await;
            (
                [("content-type", "application/json")],
                r#"{"fake": true, "released": true}"#,
            )
                .into_response()
        }
    }
}

/// A loopback address that refuses connections, and keeps refusing for as
/// long as the value lives: the port stays bound (so no other test's
/// server can be given it, as happened with a port released right away)
/// but never listens, so a connection is refused.
pub struct ClosedPort {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _reserved: tokio::net::TcpSocket,
}

pub async fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    ClosedPort {
        url: format!("http://{addr}"),
        _reserved: socket,
    }
}
