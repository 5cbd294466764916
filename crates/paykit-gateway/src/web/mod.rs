//! The two web apps the gateway serves: the cashier console (`/console`) for merchant staff
//! and the sandbox wallet (`/wallet`) for trying the consumer side. Pages are rendered on
//! the server (maud) with a little hand-written JS for live status and the payment code.
//! Every action goes through the JSON API's own handlers ([`api`]), so the pages can do
//! nothing the API would refuse and show each refusal next to the field it concerns.
//!
//! Sessions are cookies (`HttpOnly`, `SameSite=Strict`, `Secure` under HTTPS); every form
//! carries a CSRF token derived from the session, and cross-site POSTs are refused.

pub mod api;
mod console;
pub mod layout;
mod scan;
mod wallet;

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::html;

use crate::app::AppState;
use api::InternalApi;
use layout::{App, Fields};

/// What every page handler shares.
#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    pub api: InternalApi,
    secure_cookies: bool,
}

/// The pages, ready to merge into the gateway's router.
pub fn router<S: Clone + Send + Sync + 'static>(state: AppState) -> Router<S> {
    let web = WebState {
        api: InternalApi::new(state.clone()),
        secure_cookies: state.config().tls_cert.is_some(),
        app: state,
    };
    Router::new()
        .route("/assets/paykit.css", get(|| asset("text/css", include_str!("assets/paykit.css"))))
        .route("/assets/console.js", get(|| asset("text/javascript", include_str!("assets/console.js"))))
        .route("/assets/wallet.js", get(|| asset("text/javascript", include_str!("assets/wallet.js"))))
        .merge(console::routes())
        .merge(wallet::routes())
        .layer(middleware::from_fn(same_origin_posts))
        .layer(middleware::from_fn(page_headers))
        .with_state(web)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Pages are not cached, cannot be framed, run only their own scripts, and do not leak a
/// payment link to other sites through the Referer header.
async fn page_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; \
         frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    set(h, "cache-control", "no-store");
    res
}

/// Refuses POSTs that a browser says come from another site (login CSRF included: that
/// form has no session to derive a token from).
async fn same_origin_posts(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && sent_from_elsewhere(req.headers()) {
        return problem_page(StatusCode::FORBIDDEN, "This form was sent from another site, so it was refused.");
    }
    next.run(req).await
}

/// Whether the browser says a request comes from another site: `Sec-Fetch-Site`, or an
/// `Origin` that is not this host (an opaque `null` origin — a sandboxed frame — counts as
/// another site). Clients that send neither (curl, the tests) are judged by the CSRF token.
fn sent_from_elsewhere(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").is_some_and(|v| v == "cross-site" || v == "same-site");
    let origin_mismatch = match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => {
            let origin = origin.to_str().unwrap_or("null");
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            origin == "null" || origin_host != host.to_str().unwrap_or("")
        }
        (Some(_), None) => true,
        _ => false,
    };
    fetch_site || origin_mismatch
}

/// A plain page for what cannot be shown in a form: never a stack trace, never JSON.
pub fn problem_page(status: StatusCode, message: &str) -> Response {
    let body = layout::page(
        App::Wallet,
        "Sorry",
        html! {
            section.card.problem {
                h1 { "Sorry" }
                p { (message) }
                p { a href="/console" { "Cashier console" } " · " a href="/wallet" { "Wallet" } }
            }
        },
    );
    (status, body).into_response()
}

/// Form fields, whatever the body held: a body that does not parse gives no fields, so
/// the page answers "required" next to each field instead of an error page.
pub struct FormData(pub Fields);

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| problem_page(StatusCode::PAYLOAD_TOO_LARGE, "That form was too large to accept."))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        Ok(FormData(Fields(pairs.into_iter().collect::<HashMap<_, _>>())))
    }
}

/// The value of one cookie.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

impl WebState {
    /// A session cookie for `path`; `None` clears it.
    fn session_cookie(&self, name: &'static str, path: &'static str, token: Option<&str>) -> HeaderValue {
        let ttl = self.app.config().session_ttl_secs;
        let mut c = cookie::Cookie::build((name, token.unwrap_or("").to_owned()))
            .path(path)
            .http_only(true)
            .same_site(cookie::SameSite::Strict)
            .secure(self.secure_cookies)
            .max_age(cookie::time::Duration::seconds(if token.is_some() { ttl } else { 0 }))
            .build();
        if token.is_none() {
            c.make_removal();
        }
        HeaderValue::from_str(&c.to_string()).unwrap_or(HeaderValue::from_static(""))
    }

    /// The CSRF token of a session: derived from the session token, so nothing is stored
    /// and it changes with every log-in.
    fn csrf_token(&self, session_token: &str) -> String {
        self.app.fingerprint(&format!("csrf:{session_token}"))[..32].to_owned()
    }

    fn csrf_ok(&self, session_token: &str, fields: &Fields) -> bool {
        let expected = self.csrf_token(session_token);
        let given = fields.get("csrf");
        given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A random key for one rendering of a form, so that sending it twice (a double click,
/// a reload) makes one sale or one payment.
fn form_key() -> String {
    paykit_store::ids::random_base32(20)
}

/// An id from a form or a path, before it goes into an API path: ids are short and made
/// of letters, digits and underscores.
fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A Code 128 barcode of a payment code's digits, as SVG.
fn barcode_svg(digits: &str) -> Option<String> {
    use barcoders::generators::svg::SVG;
    use barcoders::sym::code128::Code128;
    // Character set C packs two digits per symbol: 18 digits make a short, easily scanned code.
    let code = Code128::new(format!("\u{0106}{digits}")).ok()?;
    let svg = SVG::new(120).xdim(2).generate(code.encode()).ok()?;
    // Browsers draw an SVG file in <img> only with its namespace, which barcoders leaves out.
    Some(svg.replacen("<svg ", "<svg xmlns=\"http://www.w3.org/2000/svg\" ", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_code_draws_as_a_barcode() {
        let svg = barcode_svg("135229903522940166").expect("18 digits encode");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.contains("<rect"), "{svg}");
    }

    #[test]
    fn posts_from_other_sites_are_told_apart() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let host = ("host", "127.0.0.1:8080");
        assert!(!sent_from_elsewhere(&headers(&[host, ("origin", "http://127.0.0.1:8080")])));
        assert!(!sent_from_elsewhere(&headers(&[host, ("sec-fetch-site", "same-origin")])));
        assert!(!sent_from_elsewhere(&headers(&[host])), "no browser headers: left to the CSRF token");
        assert!(sent_from_elsewhere(&headers(&[host, ("origin", "https://evil.example")])));
        assert!(sent_from_elsewhere(&headers(&[host, ("origin", "null")])), "a sandboxed frame");
        assert!(sent_from_elsewhere(&headers(&[host, ("sec-fetch-site", "cross-site")])));
        assert!(sent_from_elsewhere(&headers(&[host, ("origin", "http://127.0.0.1:8080.evil.example")])));
    }

    #[test]
    fn ids_that_could_change_a_path_are_refused() {
        assert!(safe_id("ord_abc123"));
        for bad in ["", "../x", "a/b", "a?b", "a%2f", &"x".repeat(65)] {
            assert!(!safe_id(bad), "{bad}");
        }
    }
}
