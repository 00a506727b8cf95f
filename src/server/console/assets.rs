//! The console's static files, embedded in the binary: its stylesheet and script, and
//! the vendored uPlot (MIT, `assets/vendor/uPlot.LICENSE`; version 1.6.32 from the npm
//! registry, `npm pack uplot`).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("console.css", "text/css; charset=utf-8", include_bytes!("assets/console.css")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("assets/console.js")),
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("assets/vendor/uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", include_bytes!("assets/vendor/uPlot.min.css")),
    ("uPlot.LICENSE", "text/plain; charset=utf-8", include_bytes!("assets/vendor/uPlot.LICENSE")),
];

/// `GET /ui/assets/{name}`. Open to anyone (no data in them), like `/healthz`.
pub async fn serve(Path(name): Path<String>) -> Response {
    let Some((_, ty, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, format!("no asset `{name}`")).into_response();
    };
    let mut r = (StatusCode::OK, *bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ty));
    // Embedded: they change only with the binary.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}
