//! The browser client, served from one folder (`web/`): plain GETs (no WebSocket upgrade) of
//! `/` give `index.html`, of `/NAME` the file NAME at the top of the folder. Nothing below or
//! outside the folder is served, symbolic links included, and only known file types.

use std::path::{Path, PathBuf};

use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

/// The file types served, by extension.
const TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("json", "application/json"),
    ("webmanifest", "application/manifest+json"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("ico", "image/x-icon"),
    ("txt", "text/plain; charset=utf-8"),
];

/// The folder, resolved once at start.
#[derive(Debug, Clone)]
pub(crate) struct WebRoot {
    dir: PathBuf,
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
        Ok(Self { dir })
    }

    /// `GET /NAME`: the file, or 404.
    pub(crate) async fn serve(&self, name: &str) -> Response {
        match self.read(name).await {
            Some((content_type, body)) => (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, content_type),
                    // Edits show on reload; the token in the page's address goes nowhere.
                    (header::CACHE_CONTROL, "no-store"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    (HeaderName::from_static("referrer-policy"), "no-referrer"),
                ],
                body,
            )
                .into_response(),
            None => not_found(),
        }
    }

    async fn read(&self, name: &str) -> Option<(&'static str, Vec<u8>)> {
        // One plain file name: letters, digits, `.`, `_`, `-`, not starting with a dot.
        let plain = !name.is_empty()
            && name.len() <= 255
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !plain {
            return None;
        }
        let extension = name.rsplit_once('.')?.1;
        let content_type = TYPES
            .iter()
            .find(|(ext, _)| ext.eq_ignore_ascii_case(extension))?
            .1;
        // A symbolic link may point anywhere: serve only what really is in the folder.
        let path = tokio::fs::canonicalize(self.dir.join(name)).await.ok()?;
        if path.parent() != Some(self.dir.as_path()) {
            return None;
        }
        if !tokio::fs::metadata(&path).await.ok()?.is_file() {
            return None;
        }
        let body = tokio::fs::read(&path).await.ok()?;
        Some((content_type, body))
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
