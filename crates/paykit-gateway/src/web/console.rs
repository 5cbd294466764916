//! The cashier console (`/console`): log in as a merchant's console user, start a sale and
//! show its QR until it is paid, take a payment code from a keyboard-wedge scanner, refund,
//! answer consumers' refund requests, and download the day's statement.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use paykit_core::{Currency, Money};
use paykit_store::console::ConsoleUser;
use serde::Deserialize;
use serde_json::json;

use super::api::{Actor, ApiFailure};
use super::layout::{App, Fields, Input, Notice, badge, field, flash, form, page, short_time, str_of, yuan};
use super::{FormData, WebState, cookie, form_key, problem_page, see_other};
use crate::wallet_auth::token_digest;

const COOKIE: &str = "paykit_console";
const PATH: &str = "/console";

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/console", get(dashboard).post(dashboard_post))
        .route("/console/logout", post(log_out))
        .route("/console/orders/{order_id}", get(order_page).post(order_post))
        .route("/console/orders/{order_id}/status", get(order_status))
        .route("/console/orders/{order_id}/qr.svg", get(order_qr))
        .route("/console/statement", get(statement))
}

/// A logged-in console user.
struct Staff {
    token: String,
    user: ConsoleUser,
    csrf: String,
}

impl Staff {
    fn actor(&self) -> Actor<'_> {
        Actor::Merchant { merchant_id: &self.user.merchant_id, username: &self.user.username }
    }
}

async fn staff(web: &WebState, headers: &HeaderMap) -> Result<Option<Staff>, Response> {
    let Some(token) = cookie(headers, COOKIE) else { return Ok(None) };
    let user = web
        .app
        .store()
        .console_session_user(&token_digest(&token), web.app.wall_now())
        .await
        .map_err(|_| problem_page(StatusCode::SERVICE_UNAVAILABLE, "The database is unavailable; try again."))?;
    Ok(user.map(|user| Staff { csrf: web.csrf_token(&token), token, user }))
}

fn unavailable(failure: &ApiFailure) -> Response {
    let status = if failure.is_fault() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_REQUEST };
    problem_page(status, &failure.message)
}

// ---- log in ----

fn login_page(notice: &Notice) -> Markup {
    page(
        App::Console,
        "Cashier console",
        html! {
            header.bar { h1 { "paykit · cashier console" } }
            section.narrow {
                (form(notice, "login", PATH, "", "Log in", html! {
                    (field(notice, "login", "username", "Username", Input::Text, ""))
                    (field(notice, "login", "password", "Password", Input::Password, ""))
                }))
                p.hint { "Console users are created by the merchant: " code { "paykit merchant add-user" } }
            }
        },
    )
}

async fn log_in(web: &WebState, f: &Fields) -> Response {
    let Some(username) = f.opt("username") else {
        return login_page(&Notice::invalid("login", "username", "Enter your username", f)).into_response();
    };
    if f.get("password").is_empty() {
        return login_page(&Notice::invalid("login", "password", "Enter your password", f)).into_response();
    }
    let wrong = || login_page(&Notice::invalid("login", "password", "Wrong username or password", f)).into_response();
    let user = match web.app.store().console_user_by_username(username).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            // As long as a wrong password takes: the timing must not reveal usernames.
            return match web.app.passwords().verify_unknown(f.get("password")).await {
                Ok(_) => wrong(),
                Err(e) => problem_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
            };
        }
        Err(_) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, "The database is unavailable; try again."),
    };
    match web.app.passwords().verify(f.get("password"), &user.password_hash).await {
        Ok(true) => {}
        Ok(false) => return wrong(),
        Err(e) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
    }
    let token = paykit_store::ids::random_base32(40);
    let now = web.app.wall_now();
    let expires = now.plus_secs(web.app.config().session_ttl_secs);
    if web.app.store().create_console_session(&token_digest(&token), &user.id, expires, now).await.is_err() {
        return problem_page(StatusCode::SERVICE_UNAVAILABLE, "The database is unavailable; try again.");
    }
    let mut res = see_other(PATH);
    res.headers_mut().append(header::SET_COOKIE, web.session_cookie(COOKIE, PATH, Some(&token)));
    res
}

async fn log_out(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    if let Ok(Some(s)) = staff(&web, &headers).await
        && web.csrf_ok(&s.token, &f)
    {
        let _ = web.app.store().end_console_session(&token_digest(&s.token)).await;
    }
    let mut res = see_other(PATH);
    res.headers_mut().append(header::SET_COOKIE, web.session_cookie(COOKIE, PATH, None));
    res
}

// ---- the dashboard ----

#[derive(Deserialize, Default)]
struct Filter {
    status: Option<String>,
}

const FILTERS: [(&str, &str); 6] = [
    ("", "All"),
    ("SUCCESS", "Paid"),
    ("NOTPAY", "Waiting"),
    ("USERPAYING", "Confirming"),
    ("CLOSED", "Closed"),
    ("REVOKED", "Reversed"),
];

async fn dashboard(
    State(web): State<WebState>,
    headers: HeaderMap,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Response {
    let filter = filter.ok().map(|Query(f)| f).unwrap_or_default();
    match staff(&web, &headers).await {
        Err(res) => res,
        Ok(None) => login_page(&Notice::default()).into_response(),
        Ok(Some(s)) => dashboard_page(&web, &s, &filter, &Notice::default()).await,
    }
}

async fn dashboard_post(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    if f.get("form") == "login" {
        return log_in(&web, &f).await;
    }
    let s = match staff(&web, &headers).await {
        Err(res) => return res,
        Ok(None) => return login_page(&Notice::default()).into_response(),
        Ok(Some(s)) => s,
    };
    if !web.csrf_ok(&s.token, &f) {
        return see_other(PATH);
    }
    let notice = match f.get("form") {
        "sale" => match start_sale(&web, &s, &f).await {
            Ok(order_id) => return see_other(&format!("/console/orders/{order_id}")),
            Err(n) => n,
        },
        "micropay" => match micropay(&web, &s, &f).await {
            Ok(order_id) => return see_other(&format!("/console/orders/{order_id}")),
            Err(n) => n,
        },
        "approve" | "refuse" => answer_request(&web, &s, &f).await,
        _ => Notice::default(),
    };
    dashboard_page(&web, &s, &Filter::default(), &notice).await
}

async fn start_sale(web: &WebState, s: &Staff, f: &Fields) -> Result<String, Notice> {
    if f.opt("amount").is_none() {
        return Err(Notice::invalid("sale", "amount", "Enter the amount to charge", f));
    }
    let body = json!({
        "out_trade_no": format!("web{}", f.get("key")),
        "amount": f.get("amount").trim(),
        "description": f.opt("description").unwrap_or("Counter sale"),
    });
    match web.api.call(s.actor(), Method::POST, "/v1/orders", Some(&body), None).await {
        Ok(order) => Ok(order["order_id"].as_str().unwrap_or_default().to_owned()),
        Err(e) => Err(Notice::refused("sale", &["amount", "description"], &e, f)),
    }
}

async fn micropay(web: &WebState, s: &Staff, f: &Fields) -> Result<String, Notice> {
    if f.opt("amount").is_none() {
        return Err(Notice::invalid("micropay", "amount", "Enter the amount to charge", f));
    }
    let auth_code: String = f.get("auth_code").chars().filter(|c| !c.is_whitespace()).collect();
    if auth_code.is_empty() {
        return Err(Notice::invalid("micropay", "auth_code", "Scan the customer's payment code", f));
    }
    let body = json!({
        "out_trade_no": format!("web{}", f.get("key")),
        "amount": f.get("amount").trim(),
        "auth_code": auth_code,
        "description": f.opt("description").unwrap_or("Counter sale"),
    });
    match web.api.call(s.actor(), Method::POST, "/v1/micropay", Some(&body), None).await {
        Ok(order) => Ok(order["order_id"].as_str().unwrap_or_default().to_owned()),
        Err(e) => Err(Notice::refused("micropay", &["amount", "auth_code", "description"], &e, f)),
    }
}

async fn answer_request(web: &WebState, s: &Staff, f: &Fields) -> Notice {
    let id = f.get("request_id");
    if !super::safe_id(id) {
        return Notice::invalid("requests", "request_id", "Choose a refund request", f);
    }
    let (form_name, path, body) = if f.get("form") == "approve" {
        ("approve", format!("/v1/refund-requests/{id}/approve"), None)
    } else {
        if f.opt("reason").is_none() {
            return Notice::invalid("refuse", "reason", "Say why the refund is refused", f);
        }
        ("refuse", format!("/v1/refund-requests/{id}/refuse"), Some(json!({ "reason": f.get("reason").trim() })))
    };
    match web.api.call(s.actor(), Method::POST, &path, body.as_ref(), None).await {
        Ok(r) if form_name == "approve" => {
            Notice::ok(format!("Refund request approved: {} goes back to the customer.", yuan(str_of(&r["amount"]))))
        }
        Ok(_) => Notice::ok("Refund request refused; the customer can escalate it to paykit."),
        Err(e) => Notice::refused(if form_name == "approve" { "approve" } else { "refuse" }, &["reason"], &e, f),
    }
}

/// Beijing midnight today, in RFC 3339: "today" for a Chinese shop.
fn today_start(web: &WebState) -> (String, String) {
    let now = web.app.clock().now().unix_secs();
    let day = (now + 8 * 3600).div_euclid(86_400);
    let start = day * 86_400 - 8 * 3600;
    let date = time::OffsetDateTime::from_unix_timestamp(day * 86_400)
        .map_or_else(|_| String::new(), |t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()));
    (paykit_core::time::Timestamp::from_unix_secs(start).to_rfc3339(), date)
}

async fn dashboard_page(web: &WebState, s: &Staff, filter: &Filter, notice: &Notice) -> Response {
    let status = filter.status.as_deref().filter(|st| FILTERS.iter().any(|(v, _)| v == st) && !st.is_empty());
    let (from, today) = today_start(web);
    let mut path = format!("/v1/orders?limit=100&from={}", urlencode(&from));
    if let Some(st) = status {
        path += &format!("&status={st}");
    }
    let merchant = web.api.call(s.actor(), Method::GET, "/v1/merchant", None, None).await;
    let orders = web.api.call(s.actor(), Method::GET, &path, None, None).await;
    let requests = web.api.call(s.actor(), Method::GET, "/v1/refund-requests?status=PENDING", None, None).await;
    let (merchant, orders, requests) = match (merchant, orders, requests) {
        (Ok(m), Ok(o), Ok(r)) => (m, o, r),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return unavailable(&e),
    };
    let key = form_key();
    let empty = Vec::new();
    let orders = orders["orders"].as_array().unwrap_or(&empty);
    let requests = requests["refund_requests"].as_array().unwrap_or(&empty);
    page(
        App::Console,
        "Cashier console",
        html! {
            (top_bar(s, str_of(&merchant["name"])))
            (flash(notice))
            div.grid {
                (form(notice, "sale", PATH, &s.csrf, "Show QR to customer", html! {
                    h2 { "New sale" }
                    p.hint { "The customer scans a QR with their paykit wallet." }
                    input type="hidden" name="key" value=(key);
                    (field(notice, "sale", "amount", "Amount", Input::Amount, ""))
                    (field(notice, "sale", "description", "Description (optional)", Input::Text, ""))
                }))
                (form(notice, "micropay", PATH, &s.csrf, "Charge payment code", html! {
                    h2 { "Scan payment code" }
                    p.hint { "Enter the amount, then scan the customer's payment code: the scanner types it and presses Enter." }
                    input type="hidden" name="key" value=(key);
                    (field(notice, "micropay", "amount", "Amount", Input::Amount, ""))
                    (field(notice, "micropay", "auth_code", "Payment code", Input::Digits, ""))
                }))
            }
            section.card #refund-requests {
                h2 { "Refund requests waiting for you" }
                @if requests.is_empty() {
                    p.empty { "None waiting." }
                } @else {
                    @for r in requests {
                        div.request data-request-id=(str_of(&r["refund_request_id"])) {
                            p {
                                strong { (yuan(str_of(&r["amount"]))) }
                                " for order " a href={ "/console/orders/" (str_of(&r["order_id"])) } { (str_of(&r["order_id"])) }
                                br;
                                span.hint { "Reason: " (str_of(&r["reason"])) " · " (short_time(str_of(&r["created_at"]))) }
                            }
                            div.actions {
                                form method="post" action=(PATH) novalidate {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    input type="hidden" name="form" value="approve";
                                    input type="hidden" name="request_id" value=(str_of(&r["refund_request_id"]));
                                    button type="submit" { "Approve refund" }
                                }
                                (form(notice, "refuse", PATH, &s.csrf, "Refuse", html! {
                                    input type="hidden" name="request_id" value=(str_of(&r["refund_request_id"]));
                                    (field(notice, "refuse", "reason", "Why refuse?", Input::Text, ""))
                                }))
                            }
                        }
                    }
                }
            }
            section.card #orders {
                h2 { "Today's orders" }
                nav.filters {
                    @for (value, label) in FILTERS {
                        @let current = status.unwrap_or("") == value;
                        a class={ @if current { "current" } } href={ "/console" @if !value.is_empty() { "?status=" (value) } } { (label) }
                    }
                }
                @if orders.is_empty() {
                    p.empty { "No orders yet today." }
                } @else {
                    table {
                        thead { tr { th { "Time" } th { "Order" } th { "Description" } th.num { "Amount" } th { "Status" } } }
                        tbody {
                            @for o in orders {
                                tr {
                                    td { (short_time(str_of(&o["created_at"]))) }
                                    td { a href={ "/console/orders/" (str_of(&o["order_id"])) } { (str_of(&o["out_trade_no"])) } }
                                    td { (str_of(&o["description"])) }
                                    td.num { (yuan(str_of(&o["amount"]))) }
                                    td { (badge(str_of(&o["status"]))) }
                                }
                            }
                        }
                    }
                }
            }
            section.card #statement {
                h2 { "Statement" }
                form method="get" action="/console/statement" novalidate {
                    (field(notice, "statement", "date", "Day (Beijing time)", Input::Date, &today))
                    button type="submit" { "Download CSV" }
                }
            }
        },
    )
    .into_response()
}

fn top_bar(s: &Staff, merchant_name: &str) -> Markup {
    html! {
        header.bar {
            h1 { a href="/console" { (merchant_name) } " · cashier console" }
            form.inline method="post" action="/console/logout" {
                span.hint { (s.user.username) " " }
                input type="hidden" name="csrf" value=(s.csrf);
                button.link type="submit" { "Log out" }
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).map(|e| e[2..].to_owned()).unwrap_or_default()
}

// ---- one order: the QR screen, the wait, success, refunds ----

async fn order_page(State(web): State<WebState>, headers: HeaderMap, Path(order_id): Path<String>) -> Response {
    match staff(&web, &headers).await {
        Err(res) => res,
        Ok(None) => see_other(PATH),
        Ok(Some(s)) => render_order(&web, &s, &order_id, &Notice::default()).await,
    }
}

async fn order_post(
    State(web): State<WebState>,
    headers: HeaderMap,
    Path(order_id): Path<String>,
    FormData(f): FormData,
) -> Response {
    let s = match staff(&web, &headers).await {
        Err(res) => return res,
        Ok(None) => return see_other(PATH),
        Ok(Some(s)) => s,
    };
    if !web.csrf_ok(&s.token, &f) || !super::safe_id(&order_id) {
        return see_other(&format!("/console/orders/{order_id}"));
    }
    let notice = match f.get("form") {
        "refund" => refund(&web, &s, &order_id, &f).await,
        "print" => {
            let path = format!("/v1/orders/{order_id}/print");
            match web.api.call(s.actor(), Method::POST, &path, None, None).await {
                Ok(_) => Notice::ok("Sent to the counter printer."),
                Err(e) => Notice::refused("print", &[], &e, &f),
            }
        }
        action @ ("close" | "reverse") => {
            let path = format!("/v1/orders/{order_id}/{action}");
            match web.api.call(s.actor(), Method::POST, &path, None, None).await {
                Ok(_) if action == "close" => Notice::ok("Sale cancelled; the QR no longer works."),
                Ok(_) => Notice::ok("Payment reversed; the customer has not been charged."),
                Err(e) => Notice::refused(if action == "close" { "close" } else { "reverse" }, &[], &e, &f),
            }
        }
        _ => Notice::default(),
    };
    render_order(&web, &s, &order_id, &notice).await
}

async fn refund(web: &WebState, s: &Staff, order_id: &str, f: &Fields) -> Notice {
    if f.opt("amount").is_none() {
        return Notice::invalid("refund", "amount", "Enter the amount to refund", f);
    }
    let body = json!({
        "order_id": order_id,
        "out_refund_no": format!("web{}", f.get("key")),
        "amount": f.get("amount").trim(),
        "reason": f.opt("reason").unwrap_or("Refund at the counter"),
    });
    match web.api.call(s.actor(), Method::POST, "/v1/refunds", Some(&body), None).await {
        Ok(r) => Notice::ok(format!(
            "Refund of {} {}.",
            yuan(str_of(&r["amount"])),
            if str_of(&r["status"]) == "SUCCESS" { "done" } else { "sent to the bank" }
        )),
        Err(e) => Notice::refused("refund", &["amount", "reason"], &e, f),
    }
}

async fn render_order(web: &WebState, s: &Staff, order_id: &str, notice: &Notice) -> Response {
    if !super::safe_id(order_id) {
        return problem_page(StatusCode::NOT_FOUND, "There is no such order.");
    }
    let order = match web.api.call(s.actor(), Method::GET, &format!("/v1/orders/{order_id}"), None, None).await {
        Ok(o) => o,
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            return problem_page(StatusCode::NOT_FOUND, "There is no such order.");
        }
        Err(e) => return unavailable(&e),
    };
    let merchant = web.api.call(s.actor(), Method::GET, "/v1/merchant", None, None).await.unwrap_or_default();
    let refunds = web.app.store().order_refunds(&s.user.merchant_id, order_id).await.unwrap_or_default();
    // A bridge polls every 2 s; one heard from in the last 10 s is connected.
    let bridge_connected = web
        .app
        .store()
        .bridge_last_poll(&s.user.merchant_id)
        .await
        .ok()
        .flatten()
        .is_some_and(|t| web.app.wall_now().unix_secs() - t.unix_secs() <= 10);
    let status = str_of(&order["status"]);
    let amount = str_of(&order["amount"]);
    let refunded = refunds
        .iter()
        .filter(|r| matches!(r.status.as_str(), "SUCCESS" | "PROCESSING"))
        .try_fold(Money::zero(Currency::Cny), |sum, r| sum.checked_add(r.amount));
    let refundable = match (Money::parse(amount, Currency::Cny), refunded) {
        (Ok(paid), Ok(refunded)) => paid.checked_sub(refunded).map(|m| m.to_string()).unwrap_or_default(),
        _ => String::new(),
    };
    let expire_at = paykit_core::time::Timestamp::parse_rfc3339(str_of(&order["expire_at"]))
        .map(|t| t.unix_secs())
        .unwrap_or_default();
    let title = match status {
        "SUCCESS" => "Paid",
        "NOTPAY" => "Waiting for payment",
        "USERPAYING" => "Waiting for the customer",
        _ => "Order",
    };
    page(
        App::Console,
        title,
        html! {
            (top_bar(s, str_of(&merchant["name"])))
            (flash(notice))
            @match status {
                "NOTPAY" => {
                    section.card.sale-qr data-poll=(format!("/console/orders/{order_id}/status")) data-status=(status) {
                        p.amount-label { "Amount due" }
                        p.big-amount { (yuan(amount)) }
                        p.description { (str_of(&order["description"])) }
                        img.qr src=(format!("/console/orders/{order_id}/qr.svg")) alt="QR code to scan with the paykit wallet"
                            data-code-url=(str_of(&order["code_url"]));
                        p.waiting { "Scan with the paykit wallet · expires in " span.countdown data-expire-at=(expire_at) { "…" } }
                        (form(notice, "close", &format!("/console/orders/{order_id}"), &s.csrf, "Cancel sale", html! {}))
                    }
                }
                "USERPAYING" => {
                    section.card.sale-wait data-poll=(format!("/console/orders/{order_id}/status")) data-status=(status) {
                        p.big-amount { (yuan(amount)) }
                        p.waiting { span.spinner {} "Waiting for the customer to confirm on their phone…" }
                        (form(notice, "reverse", &format!("/console/orders/{order_id}"), &s.csrf, "Cancel and reverse", html! {}))
                    }
                }
                "SUCCESS" => {
                    section.card.sale-success {
                        p.tick { "✓" }
                        p.amount-label { "Paid" }
                        p.big-amount { (yuan(amount)) }
                        dl.receipt {
                            dt { "Order number" } dd.order-number { (str_of(&order["out_trade_no"])) }
                            dt { "paykit order" } dd { (order_id) }
                            dt { "Description" } dd { (str_of(&order["description"])) }
                            dt { "Paid at" } dd { (short_time(str_of(&order["paid_at"]))) }
                            dt { "Paid from" } dd { (if str_of(&order["funding"]) == "card" { "bank card" } else { "wallet balance" }) }
                        }
                        div.actions.no-print {
                            @if bridge_connected {
                                (form(notice, "print", &format!("/console/orders/{order_id}"), &s.csrf, "Print on the counter printer", html! {}))
                                button.print.link type="button" data-print { "Print from this browser" }
                            } @else {
                                button.print type="button" data-print { "Print receipt" }
                            }
                            a.button href="/console" { "New sale" }
                        }
                    }
                }
                _ => {
                    section.card.sale-other {
                        p.big-amount { (yuan(amount)) }
                        p { "This order is " (badge(status)) }
                        p.hint { (str_of(&order["description"])) " · " (order_id) }
                        a.button href="/console" { "New sale" }
                    }
                }
            }
            @if !refunds.is_empty() {
                section.card #refunds {
                    h2 { "Refunds" }
                    table {
                        thead { tr { th { "Time" } th { "Refund" } th { "Reason" } th.num { "Amount" } th { "Status" } } }
                        tbody {
                            @for r in &refunds {
                                tr {
                                    td { (short_time(&r.created_at.to_rfc3339())) }
                                    td { (r.id) }
                                    td { (r.reason) }
                                    td.num { (yuan(&r.amount.to_string())) }
                                    td { (badge(&r.status)) }
                                }
                            }
                        }
                    }
                }
            }
            @if status == "SUCCESS" && refundable != "0.00" && !refundable.is_empty() {
                section.no-print {
                    (form(notice, "refund", &format!("/console/orders/{order_id}"), &s.csrf, "Refund", html! {
                        h2 { "Refund" }
                        p.hint { "Up to " (yuan(&refundable)) " can still be refunded." }
                        input type="hidden" name="key" value=(form_key());
                        (field(notice, "refund", "amount", "Amount to refund", Input::Amount, &refundable))
                        (field(notice, "refund", "reason", "Reason (optional)", Input::Text, ""))
                    }))
                }
            }
        },
    )
    .into_response()
}

/// The order's status for the page's live update (JSON for the page's script only).
async fn order_status(State(web): State<WebState>, headers: HeaderMap, Path(order_id): Path<String>) -> Response {
    let Ok(Some(s)) = staff(&web, &headers).await else {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "status": null }))).into_response();
    };
    if !super::safe_id(&order_id) {
        return (StatusCode::NOT_FOUND, axum::Json(json!({ "status": null }))).into_response();
    }
    match web.api.call(s.actor(), Method::GET, &format!("/v1/orders/{order_id}"), None, None).await {
        Ok(o) => axum::Json(json!({ "status": o["status"] })).into_response(),
        Err(e) => (e.status, axum::Json(json!({ "status": null }))).into_response(),
    }
}

async fn order_qr(State(web): State<WebState>, headers: HeaderMap, Path(order_id): Path<String>) -> Response {
    let Ok(Some(s)) = staff(&web, &headers).await else { return StatusCode::UNAUTHORIZED.into_response() };
    if !super::safe_id(&order_id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match web.api.call_raw(s.actor(), &format!("/v1/orders/{order_id}/qr.svg")).await {
        Ok((_, svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Err(e) => e.status.into_response(),
    }
}

#[derive(Deserialize)]
struct StatementQuery {
    date: Option<String>,
}

async fn statement(
    State(web): State<WebState>,
    headers: HeaderMap,
    q: Result<Query<StatementQuery>, QueryRejection>,
) -> Response {
    let s = match staff(&web, &headers).await {
        Err(res) => return res,
        Ok(None) => return see_other(PATH),
        Ok(Some(s)) => s,
    };
    let date = q.ok().and_then(|Query(q)| q.date).unwrap_or_default();
    let f = Fields([("date".to_owned(), date.clone())].into_iter().collect());
    let ok_shape = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    if !ok_shape {
        let notice = Notice::invalid("statement", "date", "Choose a day (YYYY-MM-DD)", &f);
        return dashboard_page(&web, &s, &Filter::default(), &notice).await;
    }
    match web.api.call_raw(s.actor(), &format!("/v1/statements/{date}.csv")).await {
        Ok((h, csv)) => {
            let disposition = h.get(header::CONTENT_DISPOSITION).cloned();
            let mut res = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response();
            if let Some(d) = disposition {
                res.headers_mut().insert(header::CONTENT_DISPOSITION, d);
            }
            res
        }
        Err(e) => {
            let notice = Notice::refused("statement", &["date"], &e, &f);
            dashboard_page(&web, &s, &Filter::default(), &notice).await
        }
    }
}
