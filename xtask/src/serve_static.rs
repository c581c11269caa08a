//! `cargo xtask serve-static`: a static file server for single-page apps (Element Call), bound to
//! 127.0.0.1: a path that is not a file gets `index.html`.

use std::path::{Component, Path, PathBuf};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

pub(crate) async fn run(root: PathBuf, port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = Router::new().fallback(move |uri: Uri| {
        let root = root.clone();
        async move { serve(&root, &uri).await }
    });
    axum::serve(listener, app).await?;
    Ok(())
}

async fn serve(root: &Path, uri: &Uri) -> Response {
    let relative = Path::new(uri.path().trim_start_matches('/'));
    let safe = relative.components().all(|c| matches!(c, Component::Normal(_)));
    let candidate = root.join(relative);
    let file = if safe && !uri.path().contains('%') && candidate.is_file() {
        candidate
    } else {
        root.join("index.html")
    };
    match std::fs::read(&file) {
        Ok(bytes) => {
            let mut response = bytes.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&file)));
            response
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "tflite" | "binarypb" | "data" => "application/octet-stream",
        _ => "application/octet-stream",
    }
}
