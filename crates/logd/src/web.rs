//! The web page logd serves at its HTTP address: search, live tail, the fleet view and
//! the alerts, in one page of plain HTML, CSS and JavaScript (`crates/logd/web/`), built
//! into the binary (no build step, nothing loaded from elsewhere).
//!
//! - `GET /` (and `/index.html`): the page;
//! - `GET /app.js`, `GET /style.css`: its script and style sheet.
//!
//! Every answer carries a strong `ETag` (a hash of the file, fixed at compile time) and
//! `Cache-Control: no-cache`, so a browser revalidates and gets `304 Not Modified` while
//! the file is unchanged; the page's `Content-Security-Policy` allows nothing but this
//! origin. The page talks to the API documented in [`crate::http`] only: it never loads
//! every record (a search asks for the newest `limit` matches and pages backwards with
//! `until`; the tail is `/api/tail`'s event stream with a bounded number of rows kept).

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: &'static str,
}

/// FNV-1a (64 bits) of `bytes`, at compile time: the files' `ETag`s.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"` + 16 lowercase hex digits of `hash` + `"`, at compile time.
const fn etag_bytes(hash: u64) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($file:literal, $content_type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file));
        const TAG: [u8; 18] = etag_bytes(fnv1a(BODY));
        const ETAG: &str = match std::str::from_utf8(&TAG) {
            Ok(s) => s,
            Err(_) => panic!("an ETag is ASCII"),
        };
        Asset {
            body: BODY,
            content_type: $content_type,
            etag: ETAG,
        }
    }};
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
const APP_JS: Asset = asset!("app.js", "text/javascript; charset=utf-8");
const STYLE_CSS: Asset = asset!("style.css", "text/css; charset=utf-8");

/// What the page may load: only this origin (its script, style sheet and API).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The page's routes (`/`, `/index.html`, `/app.js`, `/style.css`), for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/index.html",
            get(|h: HeaderMap| async move { serve(&INDEX, &h) }),
        )
        .route(
            "/app.js",
            get(|h: HeaderMap| async move { serve(&APP_JS, &h) }),
        )
        .route(
            "/style.css",
            get(|h: HeaderMap| async move { serve(&STYLE_CSS, &h) }),
        )
}

/// The file, or `304 Not Modified` when the request's `If-None-Match` names its ETag.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let not_modified = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == asset.etag);
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if not_modified {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    (StatusCode::OK, headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_hex_and_differ() {
        for asset in [&INDEX, &APP_JS, &STYLE_CSS] {
            assert_eq!(asset.etag.len(), 18);
            assert!(asset.etag.starts_with('"') && asset.etag.ends_with('"'));
            assert!(!asset.body.is_empty());
        }
        assert_ne!(INDEX.etag, APP_JS.etag);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(&etag_bytes(0x0123_4567_89ab_cdef), b"\"0123456789abcdef\"");
    }

    #[test]
    fn if_none_match_gives_304() {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(APP_JS.etag));
        assert_eq!(serve(&APP_JS, &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve(&INDEX, &h).status(), StatusCode::OK);
        let ok = serve(&STYLE_CSS, &HeaderMap::new());
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            ok.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
    }
}
