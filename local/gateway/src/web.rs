//! The browser client, served from one folder (`web/`): plain GETs (no WebSocket upgrade) of
//! `/` give `index.html`, of `/NAME` the file NAME at the top of the folder. Nothing below or
//! outside the folder is served, symbolic links included, and only known file types.
//!
//! `tower-http`'s `ServeDir` reads the file and sets its type; the checks in front of it are
//! ours, because ServeDir serves sub-folders and follows symbolic links, and a page the
//! developer opens should not reach what a link in `web/` points at.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeDir;

/// The file types served, by extension.
const EXTENSIONS: &[&str] = &[
    "html",
    "js",
    "mjs",
    "css",
    "json",
    "webmanifest",
    "svg",
    "png",
    "ico",
    "txt",
];

/// The folder, resolved once at start.
#[derive(Debug, Clone)]
pub(crate) struct WebRoot {
    dir: PathBuf,
    files: ServeDir,
}

impl WebRoot {
    /// Resolves `dir` (which must be a folder).
    pub(crate) fn new(dir: &Path) -> std::io::Result<Self> {
        let dir = dir.canonicalize()?;
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a folder",
            ));
        }
        let files = ServeDir::new(&dir).append_index_html_on_directories(false);
        Ok(Self { dir, files })
    }

    /// `GET /NAME`: the file, or 404.
    pub(crate) async fn serve(&self, name: &str) -> Response {
        if !self.is_served(name).await {
            return not_found();
        }
        let Ok(request) = Request::get(format!("/{name}")).body(Body::empty()) else {
            return not_found();
        };
        // ServeDir's error is `Infallible`: it answers every request.
        let Ok(response) = self.files.clone().oneshot(request).await;
        if response.status() != StatusCode::OK {
            return not_found();
        }
        let mut response = response.map(Body::new);
        let headers = response.headers_mut();
        // The project's text files are UTF-8; without the charset a browser reads an HTML page
        // as windows-1252.
        let text_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|t| t.starts_with("text/") && !t.contains("charset"))
            .map(|t| format!("{t}; charset=utf-8"));
        if let Some(value) = text_type.and_then(|t| HeaderValue::from_str(&t).ok()) {
            headers.insert(header::CONTENT_TYPE, value);
        }
        for (name, value) in [
            // Edits show on reload; the token in the page's address goes nowhere.
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (HeaderName::from_static("referrer-policy"), "no-referrer"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        response
    }

    /// Whether `name` is a plain file of a served type, really in the folder (not a link).
    async fn is_served(&self, name: &str) -> bool {
        // One plain file name: letters, digits, `.`, `_`, `-`, not starting with a dot.
        let plain = !name.is_empty()
            && name.len() <= 255
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        let known = name
            .rsplit_once('.')
            .is_some_and(|(_, ext)| EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)));
        if !plain || !known {
            return false;
        }
        tokio::fs::symlink_metadata(self.dir.join(name))
            .await
            .is_ok_and(|m| m.file_type().is_file())
    }
}

/// The answer for anything not served.
pub(crate) fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}

/// The path of the web client's change events (server-sent events, `make dev` watching).
pub(crate) const RELOAD_EVENTS_PATH: &str = "/_local/reload";

/// `GET /_local/reload`: one `reload` event each time the web client's files change, so that
/// an open page can offer to load them; comments keep the stream open meanwhile.
pub(crate) async fn reload_events(
    axum::extract::State(shared): axum::extract::State<std::sync::Arc<crate::state::Shared>>,
) -> Response {
    if shared.web.is_none() {
        return not_found();
    }
    let changes = shared.web_changes();
    let events = futures::stream::unfold(changes, |mut changes| async move {
        changes.changed().await.ok()?;
        let event = axum::response::sse::Event::default()
            .event("reload")
            .data("web");
        Some((Ok::<_, std::convert::Infallible>(event), changes))
    });
    axum::response::sse::Sse::new(events)
        .keep_alive(axum::response::sse::KeepAlive::default())
        .into_response()
}
