//! The sandbox wallet (`/wallet`): a phone-shaped page for trying the consumer side —
//! register, real name, pay password, cards and top-up, scan (paste a link or upload a
//! picture of a QR), pay, show the payment code, confirm, records and refund requests,
//! transfers, red packets, bills and freezing.

use axum::Router;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{Actor, ApiFailure};
use super::layout::{App, Fields, Input, Notice, badge, field, flash, form, page, short_time, str_of, yuan};
use super::scan::decode_qr;
use super::{FormData, WebState, cookie, form_key, problem_page, see_other};
use crate::wallet_auth::token_digest;

const COOKIE: &str = "paykit_wallet";
const PATH: &str = "/wallet";
/// A phone photo is a few megabytes.
const MAX_UPLOAD_BYTES: usize = 12 << 20;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/wallet", get(home).post(home_post))
        .route("/wallet/logout", post(log_out))
        .route("/wallet/me", get(me_page).post(me_post))
        .route("/wallet/cards", get(cards_page).post(cards_post))
        .route("/wallet/scan", get(scan_page).post(scan_post).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)))
        .route("/wallet/pay", post(pay_post))
        .route("/wallet/code", get(code_page).post(code_post))
        .route("/wallet/code/qr.svg", get(code_qr))
        .route("/wallet/code/barcode.svg", get(code_barcode))
        .route("/wallet/confirmations", get(confirmations_page).post(confirmations_post))
        .route("/wallet/records", get(records_page).post(records_post))
        .route("/wallet/transfers", get(transfers_page).post(transfers_post))
        .route("/wallet/red-packets", get(packets_page).post(packets_post))
        .route("/wallet/bills", get(bills_page).post(bills_post))
}

/// A logged-in wallet user, with their profile.
struct Me {
    token: String,
    csrf: String,
    profile: Value,
}

impl Me {
    fn actor(&self) -> Actor<'_> {
        Actor::Wallet { token: &self.token }
    }

    fn verified(&self) -> bool {
        self.profile["real_name_verified"].as_bool().unwrap_or(false)
    }

    fn has_pay_password(&self) -> bool {
        self.profile["pay_password_set"].as_bool().unwrap_or(false)
    }
}

async fn me(web: &WebState, headers: &HeaderMap) -> Result<Option<Me>, Response> {
    let Some(token) = cookie(headers, COOKIE) else { return Ok(None) };
    match web.api.call(Actor::Wallet { token: &token }, Method::GET, "/wallet/v1/profile", None, None).await {
        Ok(profile) => Ok(Some(Me { csrf: web.csrf_token(&token), token, profile })),
        Err(e) if e.is_fault() => Err(problem_page(StatusCode::SERVICE_UNAVAILABLE, &e.message)),
        Err(_) => Ok(None),
    }
}

/// The logged-in user for a form post, or where to send the browser instead.
async fn poster(web: &WebState, headers: &HeaderMap, f: &Fields, back: &str) -> Result<Me, Response> {
    match me(web, headers).await? {
        None => Err(see_other(PATH)),
        Some(m) if !web.csrf_ok(&m.token, f) => Err(see_other(back)),
        Some(m) => Ok(m),
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// A shell with the wallet's top bar and a way back home.
fn screen(title: &str, me: Option<&Me>, body: Markup) -> Response {
    page(
        App::Wallet,
        title,
        html! {
            header.bar {
                @if me.is_some() && title != "Wallet" { a.back href="/wallet" { "‹ Home" } }
                h1 { (title) }
            }
            (body)
        },
    )
    .into_response()
}

impl WebState {
    /// Calls the wallet API for a form and turns the outcome into a notice.
    async fn wallet_action(
        &self,
        me: &Me,
        f: &Fields,
        form: &'static str,
        form_fields: &[&str],
        (method, path, body): (Method, String, Option<Value>),
        ok: impl FnOnce(&Value) -> String,
    ) -> Notice {
        let key = f.opt("key");
        match self.api.call(me.actor(), method, &path, body.as_ref(), key).await {
            Ok(v) => Notice::ok(ok(&v)),
            Err(e) => Notice::refused(form, form_fields, &e, f),
        }
    }
}

/// Requires the listed fields to be filled in, naming the first empty one.
fn required(form: &'static str, f: &Fields, fields: &[(&str, &str)]) -> Result<(), Notice> {
    match fields.iter().find(|(name, _)| f.opt(name).is_none()) {
        Some((name, message)) => Err(Notice::invalid(form, name, *message, f)),
        None => Ok(()),
    }
}

// ---- home, register, log in ----

async fn home(State(web): State<WebState>, headers: HeaderMap) -> Response {
    match me(&web, &headers).await {
        Err(res) => res,
        Ok(None) => welcome(&Notice::default()),
        Ok(Some(m)) => home_screen(&web, &m, &Notice::default()).await,
    }
}

fn welcome(notice: &Notice) -> Response {
    screen(
        "paykit wallet",
        None,
        html! {
            p.hint { "A sandbox wallet: no real money moves. Use the sandbox test cards to top up." }
            (flash(notice))
            (form(notice, "login", PATH, "", "Log in", html! {
                h2 { "Log in" }
                (field(notice, "login", "phone", "Phone number", Input::Phone, ""))
                (field(notice, "login", "password", "Password", Input::Password, ""))
            }))
            (form(notice, "register", PATH, "", "Create wallet", html! {
                h2 { "New here?" }
                (field(notice, "register", "phone", "Phone number (11 digits)", Input::Phone, ""))
                (field(notice, "register", "password", "Password (8 to 64 characters)", Input::Password, ""))
            }))
        },
    )
}

async fn home_post(State(web): State<WebState>, FormData(f): FormData) -> Response {
    let form = if f.get("form") == "register" { "register" } else { "login" };
    if let Err(n) = required(form, &f, &[("phone", "Enter your phone number"), ("password", "Enter a password")]) {
        return welcome(&n);
    }
    let creds = json!({ "phone": f.get("phone").trim(), "password": f.get("password") });
    if form == "register"
        && let Err(e) = web.api.call(Actor::Anonymous, Method::POST, "/wallet/v1/users", Some(&creds), None).await
    {
        return welcome(&Notice::refused("register", &["phone", "password"], &e, &f));
    }
    match web.api.call(Actor::Anonymous, Method::POST, "/wallet/v1/sessions", Some(&creds), None).await {
        Ok(session) => {
            let mut res = see_other(PATH);
            res.headers_mut()
                .append(header::SET_COOKIE, web.session_cookie(COOKIE, PATH, Some(str_of(&session["token"]))));
            res
        }
        Err(e) => welcome(&Notice::refused(form, &["phone", "password"], &e, &f)),
    }
}

async fn log_out(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    if let Ok(Some(m)) = me(&web, &headers).await
        && web.csrf_ok(&m.token, &f)
    {
        let _ = web.app.store().end_session(&token_digest(&m.token)).await;
    }
    let mut res = see_other(PATH);
    res.headers_mut().append(header::SET_COOKIE, web.session_cookie(COOKIE, PATH, None));
    res
}

async fn home_screen(web: &WebState, m: &Me, notice: &Notice) -> Response {
    let (balance, confirmations) = tokio::join!(
        web.api.call(m.actor(), Method::GET, "/wallet/v1/balance", None, None),
        web.api.call(m.actor(), Method::GET, "/wallet/v1/confirmations", None, None),
    );
    let balance = match balance {
        Ok(b) => b,
        Err(e) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
    };
    let waiting = confirmations.map(|c| list(&c["confirmations"]).len()).unwrap_or(0);
    let p = &m.profile;
    screen(
        "Wallet",
        Some(m),
        html! {
            (flash(notice))
            section.card.balance {
                p.hint { (str_of(&p["real_name"])) " · " (str_of(&p["phone"])) }
                p.amount-label { "Balance" }
                p.big-amount #balance { (yuan(str_of(&balance["balance"]))) }
                @if p["frozen"].as_bool() == Some(true) { p.form-error { "This wallet is frozen: nothing can be paid from it." } }
            }
            @if !m.verified() || !m.has_pay_password() {
                section.card.setup {
                    h2 { "Finish setting up" }
                    ul {
                        @if !m.verified() { li { a href="/wallet/me" { "Verify your real name" } " — needed to pay" } }
                        @if !m.has_pay_password() { li { a href="/wallet/me" { "Set a 6-digit pay password" } } }
                        li { a href="/wallet/cards" { "Bind a sandbox bank card and top up" } }
                    }
                }
            }
            nav.tiles {
                a href="/wallet/scan" { "Scan" }
                a href="/wallet/code" { "Pay code" }
                a href="/wallet/cards" { "Cards & top-up" }
                a href="/wallet/confirmations" {
                    "Confirm" @if waiting > 0 { " " span.count { (waiting) } }
                }
                a href="/wallet/records" { "Records" }
                a href="/wallet/transfers" { "Transfer" }
                a href="/wallet/red-packets" { "Red packets" }
                a href="/wallet/bills" { "Bills" }
                a href="/wallet/me" { "Me & security" }
            }
            form.inline method="post" action="/wallet/logout" {
                input type="hidden" name="csrf" value=(m.csrf);
                button.link type="submit" { "Log out" }
            }
        },
    )
}

// ---- me: real name, pay password, freeze ----

async fn me_page(State(web): State<WebState>, headers: HeaderMap) -> Response {
    match me(&web, &headers).await {
        Err(res) => res,
        Ok(None) => see_other(PATH),
        Ok(Some(m)) => me_screen(&m, &Notice::default()),
    }
}

fn me_screen(m: &Me, notice: &Notice) -> Response {
    let p = &m.profile;
    screen(
        "Me & security",
        Some(m),
        html! {
            (flash(notice))
            @if m.verified() {
                section.card { h2 { "Real name" } p { (str_of(&p["real_name"])) " · " (str_of(&p["id_number"])) " " (badge("VERIFIED")) } }
            } @else {
                (form(notice, "real_name", "/wallet/me", &m.csrf, "Verify", html! {
                    h2 { "Real name" }
                    p.hint { "Paying needs a verified name: your name and 18-character resident ID." }
                    (field(notice, "real_name", "name", "Name", Input::Text, ""))
                    (field(notice, "real_name", "id_number", "Resident ID number", Input::Text, ""))
                }))
            }
            (form(notice, "pay_password", "/wallet/me", &m.csrf, if m.has_pay_password() { "Change pay password" } else { "Set pay password" }, html! {
                h2 { "Pay password" }
                p.hint { "Six digits; not a run like 123456 or a repeat like 111111." }
                @if m.has_pay_password() {
                    (field(notice, "pay_password", "old_pay_password", "Current pay password", Input::PayPassword, ""))
                }
                (field(notice, "pay_password", "pay_password", "New pay password", Input::PayPassword, ""))
            }))
            @if p["frozen"].as_bool() == Some(true) {
                (form(notice, "unfreeze", "/wallet/me", &m.csrf, "Unfreeze", html! {
                    h2 { "Unfreeze" }
                    p.hint { "Prove it is you: your login password, pay password, name and ID number." }
                    (field(notice, "unfreeze", "password", "Login password", Input::Password, ""))
                    (field(notice, "unfreeze", "pay_password", "Pay password", Input::PayPassword, ""))
                    (field(notice, "unfreeze", "name", "Name", Input::Text, ""))
                    (field(notice, "unfreeze", "id_number", "Resident ID number", Input::Text, ""))
                }))
            } @else {
                (form(notice, "freeze", "/wallet/me", &m.csrf, "Freeze my wallet", html! {
                    h2 { "Lost your phone?" }
                    p.hint { "Freezing stops every payment from this wallet at once." }
                }))
            }
        },
    )
}

async fn me_post(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    let m = match poster(&web, &headers, &f, "/wallet/me").await {
        Ok(m) => m,
        Err(res) => return res,
    };
    let notice = match f.get("form") {
        "real_name" => {
            match required("real_name", &f, &[("name", "Enter your name"), ("id_number", "Enter your ID number")]) {
                Err(n) => n,
                Ok(()) => {
                    let body = json!({ "name": f.get("name").trim(), "id_number": f.get("id_number").trim() });
                    web.wallet_action(
                        &m,
                        &f,
                        "real_name",
                        &["name", "id_number"],
                        (Method::POST, "/wallet/v1/real-name".into(), Some(body)),
                        |_| "Real name verified.".to_owned(),
                    )
                    .await
                }
            }
        }
        "pay_password" => match required("pay_password", &f, &[("pay_password", "Enter six digits")]) {
            Err(n) => n,
            Ok(()) => {
                let mut body = json!({ "pay_password": f.get("pay_password") });
                if let Some(old) = f.opt("old_pay_password") {
                    body["old_pay_password"] = json!(old);
                }
                web.wallet_action(
                    &m,
                    &f,
                    "pay_password",
                    &["pay_password", "old_pay_password"],
                    (Method::PUT, "/wallet/v1/pay-password".into(), Some(body)),
                    |_| "Pay password saved.".to_owned(),
                )
                .await
            }
        },
        "freeze" => {
            web.wallet_action(
                &m,
                &f,
                "freeze",
                &[],
                (Method::POST, "/wallet/v1/freeze".into(), Some(json!({}))),
                |_| "Wallet frozen. Nothing can be paid from it until you unfreeze it.".to_owned(),
            )
            .await
        }
        "unfreeze" => {
            let body = json!({
                "password": f.get("password"), "pay_password": f.get("pay_password"),
                "name": f.get("name").trim(), "id_number": f.get("id_number").trim(),
            });
            web.wallet_action(
                &m,
                &f,
                "unfreeze",
                &["password", "pay_password", "name", "id_number"],
                (Method::POST, "/wallet/v1/unfreeze".into(), Some(body)),
                |_| "Wallet unfrozen.".to_owned(),
            )
            .await
        }
        _ => Notice::default(),
    };
    // The profile changed; read it again.
    match me(&web, &headers).await {
        Ok(Some(fresh)) => me_screen(&fresh, &notice),
        _ => me_screen(&m, &notice),
    }
}

// ---- cards: bind, unbind, top up, withdraw, repay ----

async fn cards_page(State(web): State<WebState>, headers: HeaderMap) -> Response {
    match me(&web, &headers).await {
        Err(res) => res,
        Ok(None) => see_other(PATH),
        Ok(Some(m)) => cards_screen(&web, &m, &Notice::default()).await,
    }
}

async fn my_cards(web: &WebState, m: &Me) -> Vec<Value> {
    web.api
        .call(m.actor(), Method::GET, "/wallet/v1/cards", None, None)
        .await
        .map(|v| list(&v["cards"]).to_vec())
        .unwrap_or_default()
}

fn card_label(c: &Value) -> String {
    let kind = if str_of(&c["card_type"]) == "credit" { "credit" } else { "debit" };
    format!("{} {} ••{}", str_of(&c["bank_name"]), kind, str_of(&c["last4"]))
}

async fn cards_screen(web: &WebState, m: &Me, notice: &Notice) -> Response {
    let cards = my_cards(web, m).await;
    let balance = web.api.call(m.actor(), Method::GET, "/wallet/v1/balance", None, None).await.unwrap_or_default();
    let labels: Vec<(String, String)> =
        cards.iter().map(|c| (str_of(&c["card_id"]).to_owned(), card_label(c))).collect();
    let options: Vec<(&str, &str)> = labels.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let credit: Vec<(&str, &str)> = labels
        .iter()
        .zip(&cards)
        .filter(|(_, c)| str_of(&c["card_type"]) == "credit")
        .map(|((a, b), _)| (a.as_str(), b.as_str()))
        .collect();
    let mut funding: Vec<(&str, &str)> = vec![("balance", "Wallet balance")];
    funding.extend(options.iter().filter(|(id, _)| !credit.iter().any(|(c, _)| c == id)));
    let key = form_key();
    screen(
        "Cards & top-up",
        Some(m),
        html! {
            (flash(notice))
            p.hint { "Balance " strong #balance { (yuan(str_of(&balance["balance"]))) } }
            section.card {
                h2 { "My cards" }
                @if cards.is_empty() { p.empty { "No cards yet." } }
                @for c in &cards {
                    form.row method="post" action="/wallet/cards" {
                        span { (card_label(c)) }
                        input type="hidden" name="csrf" value=(m.csrf);
                        input type="hidden" name="form" value="unbind";
                        input type="hidden" name="card_id" value=(str_of(&c["card_id"]));
                        button.link type="submit" { "Unbind" }
                    }
                }
            }
            (form(notice, "bind", "/wallet/cards", &m.csrf, "Bind card", html! {
                h2 { "Bind a sandbox card" }
                p.hint { "Test cards: 6222 0000 0000 0009 (debit, always succeeds), 6258 0000 0000 0006 (credit, can be repaid); the README lists the others." }
                (field(notice, "bind", "card_number", "Card number", Input::Digits, ""))
                (field(notice, "bind", "holder_name", "Holder's name (your real name)", Input::Text, str_of(&m.profile["real_name"])))
            }))
            @if !options.is_empty() {
                (form(notice, "top_up", "/wallet/cards", &m.csrf, "Top up", html! {
                    h2 { "Top up" }
                    input type="hidden" name="key" value=(key);
                    (field(notice, "top_up", "card_id", "From card", Input::Select(&options), ""))
                    (field(notice, "top_up", "amount", "Amount", Input::Amount, ""))
                    (field(notice, "top_up", "pay_password", "Pay password", Input::PayPassword, ""))
                }))
                (form(notice, "withdraw", "/wallet/cards", &m.csrf, "Withdraw", html! {
                    h2 { "Withdraw to a card" }
                    input type="hidden" name="key" value=(key);
                    (field(notice, "withdraw", "card_id", "To card", Input::Select(&options), ""))
                    (field(notice, "withdraw", "amount", "Amount", Input::Amount, ""))
                    (field(notice, "withdraw", "pay_password", "Pay password", Input::PayPassword, ""))
                }))
            }
            @if !credit.is_empty() {
                (form(notice, "repay", "/wallet/cards", &m.csrf, "Repay", html! {
                    h2 { "Repay a credit card" }
                    input type="hidden" name="key" value=(key);
                    (field(notice, "repay", "card_id", "Credit card", Input::Select(&credit), ""))
                    (field(notice, "repay", "funding", "Pay from", Input::Select(&funding), "balance"))
                    (field(notice, "repay", "amount", "Amount", Input::Amount, ""))
                    (field(notice, "repay", "pay_password", "Pay password", Input::PayPassword, ""))
                }))
            }
        },
    )
}

async fn cards_post(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    let m = match poster(&web, &headers, &f, "/wallet/cards").await {
        Ok(m) => m,
        Err(res) => return res,
    };
    let money_fields = [("amount", "Enter an amount"), ("pay_password", "Enter your pay password")];
    let notice = match f.get("form") {
        "bind" => match required(
            "bind",
            &f,
            &[("card_number", "Enter the card number"), ("holder_name", "Enter the holder's name")],
        ) {
            Err(n) => n,
            Ok(()) => {
                let number: String = f.get("card_number").chars().filter(|c| !c.is_whitespace()).collect();
                let body = json!({ "card_number": number, "holder_name": f.get("holder_name").trim() });
                web.wallet_action(
                    &m,
                    &f,
                    "bind",
                    &["card_number", "holder_name"],
                    (Method::POST, "/wallet/v1/cards".into(), Some(body)),
                    |c| format!("Card bound: {}.", card_label(c)),
                )
                .await
            }
        },
        "unbind" => {
            let id = f.get("card_id");
            if !super::safe_id(id) {
                Notice::default()
            } else {
                web.wallet_action(
                    &m,
                    &f,
                    "unbind",
                    &[],
                    (Method::DELETE, format!("/wallet/v1/cards/{id}"), None),
                    |_| "Card unbound.".to_owned(),
                )
                .await
            }
        }
        form @ ("top_up" | "withdraw") => {
            match required(if form == "top_up" { "top_up" } else { "withdraw" }, &f, &money_fields) {
                Err(n) => n,
                Ok(()) => {
                    let name = if form == "top_up" { "top_up" } else { "withdraw" };
                    let path = if form == "top_up" { "/wallet/v1/top-ups" } else { "/wallet/v1/withdrawals" };
                    let body = json!({ "card_id": f.get("card_id"), "amount": f.get("amount").trim(), "pay_password": f.get("pay_password") });
                    web.wallet_action(
                        &m,
                        &f,
                        name,
                        &["card_id", "amount", "pay_password"],
                        (Method::POST, path.into(), Some(body)),
                        |r| {
                            let what = if name == "top_up" { "Top-up" } else { "Withdrawal" };
                            let status = str_of(&r["status"]);
                            if status == "SUCCESS" {
                                format!("{what} of {} done.", yuan(str_of(&r["amount"])))
                            } else {
                                format!(
                                    "{what} of {} is {}: the bank answers shortly.",
                                    yuan(str_of(&r["amount"])),
                                    status.to_lowercase()
                                )
                            }
                        },
                    )
                    .await
                }
            }
        }
        "repay" => match required("repay", &f, &money_fields) {
            Err(n) => n,
            Ok(()) => {
                let body = json!({
                    "card_id": f.get("card_id"), "amount": f.get("amount").trim(),
                    "funding": f.get("funding"), "pay_password": f.get("pay_password"),
                });
                web.wallet_action(
                    &m,
                    &f,
                    "repay",
                    &["card_id", "funding", "amount", "pay_password"],
                    (Method::POST, "/wallet/v1/card-repayments".into(), Some(body)),
                    |r| {
                        format!(
                            "Repayment of {} is {}.",
                            yuan(str_of(&r["amount"])),
                            str_of(&r["status"]).to_lowercase()
                        )
                    },
                )
                .await
            }
        },
        _ => Notice::default(),
    };
    cards_screen(&web, &m, &notice).await
}

// ---- scan and pay ----

async fn scan_page(State(web): State<WebState>, headers: HeaderMap) -> Response {
    match me(&web, &headers).await {
        Err(res) => res,
        Ok(None) => see_other(PATH),
        Ok(Some(m)) => scan_screen(&m, &Notice::default()),
    }
}

fn scan_screen(m: &Me, notice: &Notice) -> Response {
    screen(
        "Scan",
        Some(m),
        html! {
            (flash(notice))
            form.card method="post" action="/wallet/scan" enctype="multipart/form-data" novalidate data-form="scan" {
                input type="hidden" name="csrf" value=(m.csrf);
                input type="hidden" name="form" value="scan";
                p.hint { "Paste the link under a shop's QR code, or upload a photo or screenshot of the QR." }
                (field(notice, "scan", "code_url", "Payment link", Input::Text, ""))
                div.field {
                    label for="scan-photo" { "…or a picture of the QR" }
                    input #scan-photo type="file" name="photo" accept="image/png,image/jpeg";
                }
                button type="submit" { "Scan" }
            }
        },
    )
}

async fn scan_post(
    State(web): State<WebState>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let mut f = Fields::default();
    let mut photo: Option<Vec<u8>> = None;
    if let Ok(mut mp) = multipart {
        loop {
            match mp.next_field().await {
                Ok(Some(field)) => {
                    let name = field.name().unwrap_or("").to_owned();
                    let Ok(bytes) = field.bytes().await else {
                        return problem_page(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "That picture is too large; send one under 12 MB.",
                        );
                    };
                    if name == "photo" {
                        photo = Some(bytes.to_vec()).filter(|b| !b.is_empty());
                    } else {
                        f.0.insert(name, String::from_utf8_lossy(&bytes).into_owned());
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    return problem_page(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "That picture is too large; send one under 12 MB.",
                    );
                }
            }
        }
    }
    let m = match poster(&web, &headers, &f, "/wallet/scan").await {
        Ok(m) => m,
        Err(res) => return res,
    };
    let code_url = match (f.opt("code_url"), photo) {
        (Some(url), _) => url.to_owned(),
        (None, Some(picture)) => match tokio::task::spawn_blocking(move || decode_qr(&picture)).await {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => return scan_screen(&m, &Notice::invalid("scan", "code_url", e.to_string(), &f)),
            Err(_) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, "Could not read that picture; try again."),
        },
        (None, None) => {
            return scan_screen(
                &m,
                &Notice::invalid("scan", "code_url", "Paste a payment link or choose a picture of a QR", &f),
            );
        }
    };
    preview(&web, &m, &code_url, &Notice::default(), &f).await
}

/// Asks the API what the code is for and shows it with the pay form.
async fn preview(web: &WebState, m: &Me, code_url: &str, notice: &Notice, f: &Fields) -> Response {
    let scanned = match web
        .api
        .call(m.actor(), Method::POST, "/wallet/v1/scans", Some(&json!({ "code_url": code_url })), None)
        .await
    {
        Ok(v) => v,
        Err(e) => return scan_screen(m, &Notice::refused("scan", &["code_url"], &e, f)),
    };
    let cards = my_cards(web, m).await;
    let labels: Vec<(String, String)> = cards
        .iter()
        .filter(|c| str_of(&c["card_type"]) != "credit")
        .map(|c| (str_of(&c["card_id"]).to_owned(), card_label(c)))
        .collect();
    let mut funding: Vec<(&str, &str)> = vec![("balance", "Wallet balance")];
    funding.extend(labels.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    screen(
        "Pay",
        Some(m),
        html! {
            (flash(notice))
            section.card.preview {
                p.merchant { (str_of(&scanned["merchant_name"])) }
                p.big-amount { (yuan(str_of(&scanned["amount"]))) }
                p.description { (str_of(&scanned["description"])) }
                p.hint { "Pay before " (short_time(str_of(&scanned["expire_at"]))) }
            }
            (form(notice, "pay", "/wallet/pay", &m.csrf, &format!("Pay {}", yuan(str_of(&scanned["amount"]))), html! {
                input type="hidden" name="key" value=(f.opt("key").map_or_else(form_key, str::to_owned));
                input type="hidden" name="order_id" value=(str_of(&scanned["order_id"]));
                input type="hidden" name="code_url" value=(code_url);
                (field(notice, "pay", "funding", "Pay from", Input::Select(&funding), "balance"))
                (field(notice, "pay", "pay_password", "Pay password", Input::PayPassword, ""))
            }))
        },
    )
}

async fn pay_post(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    let m = match poster(&web, &headers, &f, "/wallet/scan").await {
        Ok(m) => m,
        Err(res) => return res,
    };
    let code_url = f.get("code_url").to_owned();
    if f.opt("pay_password").is_none() {
        return preview(
            &web,
            &m,
            &code_url,
            &Notice::invalid("pay", "pay_password", "Enter your pay password", &f),
            &f,
        )
        .await;
    }
    let body =
        json!({ "order_id": f.get("order_id"), "funding": f.get("funding"), "pay_password": f.get("pay_password") });
    match web.api.call(m.actor(), Method::POST, "/wallet/v1/payments", Some(&body), f.opt("key")).await {
        Ok(paid) if str_of(&paid["status"]) == "HELD" => screen(
            "Check this payment",
            Some(&m),
            html! {
                section.card.held {
                    p { "For your safety this payment waits for your confirmation." }
                    a.button href="/wallet/confirmations" { "Review and confirm" }
                }
            },
        ),
        Ok(paid) => screen(
            "Paid",
            Some(&m),
            html! {
                section.card.paid {
                    p.tick { "✓" }
                    p.big-amount { (yuan(str_of(&paid["amount"]))) }
                    p { "Paid. Order " (str_of(&paid["order_id"])) }
                    a.button href="/wallet" { "Done" }
                }
            },
        ),
        Err(e) => preview(&web, &m, &code_url, &Notice::refused("pay", &["funding", "pay_password"], &e, &f), &f).await,
    }
}

// ---- the payment code ----

async fn code_page(State(web): State<WebState>, headers: HeaderMap) -> Response {
    match me(&web, &headers).await {
        Err(res) => res,
        Ok(None) => see_other(PATH),
        Ok(Some(m)) => code_screen(&m, None, &Notice::default()),
    }
}

/// The code is computed in the page from the device secret (kept in this browser's
/// storage); the server only draws the digits it is given as a QR and a barcode.
fn code_screen(m: &Me, new_device: Option<(&str, &str)>, notice: &Notice) -> Response {
    screen(
        "Payment code",
        Some(m),
        html! {
            (flash(notice))
            section.card.paycode #paycode data-user=(str_of(&m.profile["user_id"]))
                data-device-id=[new_device.map(|d| d.0)] data-device-secret=[new_device.map(|d| d.1)] {
                p.hint { "Show this to the cashier. It changes every 30 seconds." }
                div.code-area hidden {
                    img.barcode alt="payment code barcode";
                    img.qr alt="payment code QR";
                    p.digits aria-live="polite" {}
                    p.hint { "Refreshes in " span.refresh {} " s" }
                }
                p.no-crypto.form-error hidden { "This browser cannot compute the code here: open the wallet over HTTPS or on localhost." }
            }
            (form(notice, "enable", "/wallet/code", &m.csrf, "Turn on the payment code in this browser", html! {
                p.hint { "This registers this browser as one of your devices. Its secret stays in this browser." }
            }))
        },
    )
}

async fn code_post(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    let m = match poster(&web, &headers, &f, "/wallet/code").await {
        Ok(m) => m,
        Err(res) => return res,
    };
    let body = json!({ "name": "sandbox wallet page", "confirm_payments": false });
    match web.api.call(m.actor(), Method::POST, "/wallet/v1/devices", Some(&body), None).await {
        Ok(d) => code_screen(
            &m,
            Some((str_of(&d["device_id"]), str_of(&d["device_secret"]))),
            &Notice::ok("Payment code on."),
        ),
        Err(e) => code_screen(&m, None, &Notice::refused("enable", &[], &e, &f)),
    }
}

#[derive(Deserialize)]
struct Digits {
    digits: Option<String>,
}

fn payment_code_digits(q: Result<Query<Digits>, QueryRejection>) -> Option<String> {
    q.ok()
        .and_then(|Query(d)| d.digits)
        .filter(|d| d.len() == paykit_core::payment_code::LEN && d.bytes().all(|b| b.is_ascii_digit()))
}

async fn code_qr(
    State(web): State<WebState>,
    headers: HeaderMap,
    q: Result<Query<Digits>, QueryRejection>,
) -> Response {
    if !matches!(me(&web, &headers).await, Ok(Some(_))) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(digits) = payment_code_digits(q) else { return StatusCode::BAD_REQUEST.into_response() };
    match crate::qr::svg(&digits) {
        Ok(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn code_barcode(
    State(web): State<WebState>,
    headers: HeaderMap,
    q: Result<Query<Digits>, QueryRejection>,
) -> Response {
    if !matches!(me(&web, &headers).await, Ok(Some(_))) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(digits) = payment_code_digits(q) else { return StatusCode::BAD_REQUEST.into_response() };
    match super::barcode_svg(&digits) {
        Some(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}

// ---- confirmations ----

async fn confirmations_page(State(web): State<WebState>, headers: HeaderMap) -> Response {
    match me(&web, &headers).await {
        Err(res) => res,
        Ok(None) => see_other(PATH),
        Ok(Some(m)) => confirmations_screen(&web, &m, &Notice::default()).await,
    }
}

async fn confirmations_screen(web: &WebState, m: &Me, notice: &Notice) -> Response {
    let pending =
        web.api.call(m.actor(), Method::GET, "/wallet/v1/confirmations", None, None).await.unwrap_or_default();
    let pending = list(&pending["confirmations"]);
    screen(
        "Confirm payments",
        Some(m),
        html! {
            (flash(notice))
            @if pending.is_empty() { p.empty { "Nothing is waiting for you." } }
            @for c in pending {
                section.card.confirmation data-confirmation-id=(str_of(&c["confirmation_id"])) {
                    p.merchant { (str_of(&c["merchant_name"])) }
                    p.big-amount { (yuan(str_of(&c["amount"]))) }
                    p.description { (str_of(&c["description"])) }
                    (form(notice, "confirm", "/wallet/confirmations", &m.csrf, "Confirm and pay", html! {
                        input type="hidden" name="confirmation_id" value=(str_of(&c["confirmation_id"]));
                        (field(notice, "confirm", "pay_password", "Pay password", Input::PayPassword, ""))
                    }))
                    form method="post" action="/wallet/confirmations" {
                        input type="hidden" name="csrf" value=(m.csrf);
                        input type="hidden" name="form" value="decline";
                        input type="hidden" name="confirmation_id" value=(str_of(&c["confirmation_id"]));
                        button.link type="submit" { "Decline" }
                    }
                }
            }
        },
    )
}

async fn confirmations_post(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    let m = match poster(&web, &headers, &f, "/wallet/confirmations").await {
        Ok(m) => m,
        Err(res) => return res,
    };
    let id = f.get("confirmation_id");
    let notice = if !super::safe_id(id) {
        Notice::default()
    } else if f.get("form") == "decline" {
        web.wallet_action(
            &m,
            &f,
            "decline",
            &[],
            (Method::POST, format!("/wallet/v1/confirmations/{id}"), Some(json!({ "action": "decline" }))),
            |_| "Declined; nothing was charged.".to_owned(),
        )
        .await
    } else if f.opt("pay_password").is_none() {
        Notice::invalid("confirm", "pay_password", "Enter your pay password", &f)
    } else {
        let body = json!({ "action": "confirm", "pay_password": f.get("pay_password") });
        web.wallet_action(
            &m,
            &f,
            "confirm",
            &["pay_password"],
            (Method::POST, format!("/wallet/v1/confirmations/{id}"), Some(body)),
            |_| "Confirmed: paid.".to_owned(),
        )
        .await
    };
    confirmations_screen(&web, &m, &notice).await
}

// ---- records and refund requests ----

async fn records_page(State(web): State<WebState>, headers: HeaderMap) -> Response {
    match me(&web, &headers).await {
        Err(res) => res,
        Ok(None) => see_other(PATH),
        Ok(Some(m)) => records_screen(&web, &m, &Notice::default()).await,
    }
}

async fn records_screen(web: &WebState, m: &Me, notice: &Notice) -> Response {
    let (records, requests) = tokio::join!(
        web.api.call(m.actor(), Method::GET, "/wallet/v1/records?limit=50", None, None),
        web.api.call(m.actor(), Method::GET, "/wallet/v1/refund-requests", None, None),
    );
    let (records, requests) = match (records, requests) {
        (Ok(r), Ok(q)) => (r, q),
        (Err(e), _) | (_, Err(e)) => return problem_page(StatusCode::SERVICE_UNAVAILABLE, &e.message),
    };
    let requests = list(&requests["refund_requests"]);
    screen(
        "Records",
        Some(m),
        html! {
            (flash(notice))
            @if list(&records["records"]).is_empty() { p.empty { "No records yet." } }
            @for r in list(&records["records"]) {
                @let order_id = str_of(&r["reference_id"]);
                @let request = requests.iter().find(|q| str_of(&q["order_id"]) == order_id && str_of(&r["type"]) == "payment");
                section.card.record data-record-type=(str_of(&r["type"])) data-order-id=(order_id) {
                    div.row {
                        span { (str_of(&r["title"])) }
                        strong { (yuan(str_of(&r["amount"]))) }
                    }
                    p.hint { (short_time(str_of(&r["created_at"]))) " · " (str_of(&r["type"]).replace('_', " ")) " · " (badge(str_of(&r["status"]))) }
                    @if let Some(q) = request {
                        p.request { "Refund request: " (badge(str_of(&q["status"]))) " " (yuan(str_of(&q["amount"])))
                            @for step in list(&q["steps"]) { @if let Some(note) = step["note"].as_str() { " — " (note) } } }
                        @if str_of(&q["status"]) == "REFUSED" {
                            form method="post" action="/wallet/records" {
                                input type="hidden" name="csrf" value=(m.csrf);
                                input type="hidden" name="form" value="escalate";
                                input type="hidden" name="request_id" value=(str_of(&q["refund_request_id"]));
                                button.link type="submit" { "Ask paykit to decide" }
                            }
                        }
                    } @else if str_of(&r["type"]) == "payment" && str_of(&r["status"]) == "SUCCESS" {
                        details {
                            summary { "Ask for a refund" }
                            (form(notice, "refund_request", "/wallet/records", &m.csrf, "Send request", html! {
                                input type="hidden" name="order_id" value=(order_id);
                                (field(notice, "refund_request", "reason", "Why?", Input::Text, ""))
                                (field(notice, "refund_request", "amount", "Amount (empty for all of it)", Input::Amount, ""))
                            }))
                        }
                    }
                }
            }
        },
    )
}

async fn records_post(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    let m = match poster(&web, &headers, &f, "/wallet/records").await {
        Ok(m) => m,
        Err(res) => return res,
    };
    let notice = match f.get("form") {
        "refund_request" => match required("refund_request", &f, &[("reason", "Tell the merchant why")]) {
            Err(n) => n,
            Ok(()) => {
                let mut body = json!({ "order_id": f.get("order_id"), "reason": f.get("reason").trim() });
                if let Some(amount) = f.opt("amount") {
                    body["amount"] = json!(amount);
                }
                web.wallet_action(
                    &m,
                    &f,
                    "refund_request",
                    &["reason", "amount"],
                    (Method::POST, "/wallet/v1/refund-requests".into(), Some(body)),
                    |_| "Refund request sent to the merchant.".to_owned(),
                )
                .await
            }
        },
        "escalate" if super::safe_id(f.get("request_id")) => {
            let path = format!("/wallet/v1/refund-requests/{}/escalate", f.get("request_id"));
            web.wallet_action(&m, &f, "escalate", &[], (Method::POST, path, None), |_| {
                "Sent to paykit's operators to decide.".to_owned()
            })
            .await
        }
        _ => Notice::default(),
    };
    records_screen(&web, &m, &notice).await
}

// ---- transfers ----

async fn transfers_page(State(web): State<WebState>, headers: HeaderMap) -> Response {
    match me(&web, &headers).await {
        Err(res) => res,
        Ok(None) => see_other(PATH),
        Ok(Some(m)) => transfers_screen(&web, &m, &Notice::default()).await,
    }
}

async fn transfers_screen(web: &WebState, m: &Me, notice: &Notice) -> Response {
    let t = web.api.call(m.actor(), Method::GET, "/wallet/v1/transfers", None, None).await.unwrap_or_default();
    screen(
        "Transfer",
        Some(m),
        html! {
            (flash(notice))
            (form(notice, "transfer", "/wallet/transfers", &m.csrf, "Send", html! {
                input type="hidden" name="key" value=(form_key());
                (field(notice, "transfer", "to_phone", "To phone number", Input::Phone, ""))
                (field(notice, "transfer", "amount", "Amount", Input::Amount, ""))
                (field(notice, "transfer", "memo", "Note (optional)", Input::Text, ""))
                (field(notice, "transfer", "pay_password", "Pay password", Input::PayPassword, ""))
                p.hint { "The money waits for them to accept it, and comes back after 24 hours if they do not." }
            }))
            section.card {
                h2 { "Incoming" }
                @if list(&t["incoming"]).is_empty() { p.empty { "Nothing incoming." } }
                @for x in list(&t["incoming"]) {
                    div.row {
                        span { (yuan(str_of(&x["amount"]))) " " (str_of(&x["memo"])) " " (badge(str_of(&x["status"]))) }
                        @if str_of(&x["status"]) == "PENDING" {
                            form method="post" action="/wallet/transfers" {
                                input type="hidden" name="csrf" value=(m.csrf);
                                input type="hidden" name="form" value="accept";
                                input type="hidden" name="transfer_id" value=(str_of(&x["transfer_id"]));
                                button type="submit" { "Accept" }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "Sent" }
                @if list(&t["outgoing"]).is_empty() { p.empty { "Nothing sent." } }
                @for x in list(&t["outgoing"]) {
                    div.row { span { (yuan(str_of(&x["amount"]))) " " (str_of(&x["memo"])) } (badge(str_of(&x["status"]))) }
                }
            }
        },
    )
}

async fn transfers_post(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    let m = match poster(&web, &headers, &f, "/wallet/transfers").await {
        Ok(m) => m,
        Err(res) => return res,
    };
    let notice = match f.get("form") {
        "transfer" => match required(
            "transfer",
            &f,
            &[
                ("to_phone", "Enter their phone number"),
                ("amount", "Enter an amount"),
                ("pay_password", "Enter your pay password"),
            ],
        ) {
            Err(n) => n,
            Ok(()) => {
                let mut body = json!({ "to_phone": f.get("to_phone").trim(), "amount": f.get("amount").trim(), "pay_password": f.get("pay_password") });
                if let Some(memo) = f.opt("memo") {
                    body["memo"] = json!(memo);
                }
                web.wallet_action(
                    &m,
                    &f,
                    "transfer",
                    &["to_phone", "amount", "memo", "pay_password"],
                    (Method::POST, "/wallet/v1/transfers".into(), Some(body)),
                    |t| format!("Sent {}; it waits for them to accept.", yuan(str_of(&t["amount"]))),
                )
                .await
            }
        },
        "accept" if super::safe_id(f.get("transfer_id")) => {
            let path = format!("/wallet/v1/transfers/{}/accept", f.get("transfer_id"));
            web.wallet_action(&m, &f, "accept", &[], (Method::POST, path, None), |t| {
                format!("Received {}.", yuan(str_of(&t["amount"])))
            })
            .await
        }
        _ => Notice::default(),
    };
    transfers_screen(&web, &m, &notice).await
}

// ---- red packets ----

async fn packets_page(State(web): State<WebState>, headers: HeaderMap) -> Response {
    match me(&web, &headers).await {
        Err(res) => res,
        Ok(None) => see_other(PATH),
        Ok(Some(m)) => packets_screen(&m, &Notice::default()),
    }
}

fn packets_screen(m: &Me, notice: &Notice) -> Response {
    screen(
        "Red packets",
        Some(m),
        html! {
            (flash(notice))
            (form(notice, "send", "/wallet/red-packets", &m.csrf, "Put money in", html! {
                h2 { "Send a red packet" }
                input type="hidden" name="key" value=(form_key());
                (field(notice, "send", "kind", "Kind", Input::Select(&[("lucky", "Lucky (random shares)"), ("fixed", "Equal shares")]), "lucky"))
                (field(notice, "send", "total", "Total (up to ¥200.00)", Input::Amount, ""))
                (field(notice, "send", "shares", "Shares (1 to 100)", Input::Digits, ""))
                (field(notice, "send", "memo", "Wishes (optional)", Input::Text, ""))
                (field(notice, "send", "pay_password", "Pay password", Input::PayPassword, ""))
            }))
            (form(notice, "claim", "/wallet/red-packets", &m.csrf, "Open", html! {
                h2 { "Open a red packet" }
                (field(notice, "claim", "red_packet_id", "Red packet id", Input::Text, ""))
            }))
        },
    )
}

async fn packets_post(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    let m = match poster(&web, &headers, &f, "/wallet/red-packets").await {
        Ok(m) => m,
        Err(res) => return res,
    };
    let notice = match f.get("form") {
        "send" => match required(
            "send",
            &f,
            &[
                ("total", "Enter the total"),
                ("shares", "Enter how many shares"),
                ("pay_password", "Enter your pay password"),
            ],
        ) {
            Err(n) => n,
            Ok(()) => match f.get("shares").trim().parse::<i64>() {
                Err(_) => Notice::invalid("send", "shares", "Shares is a whole number from 1 to 100", &f),
                Ok(shares) => {
                    let mut body = json!({ "kind": f.get("kind"), "total": f.get("total").trim(), "shares": shares, "pay_password": f.get("pay_password") });
                    if let Some(memo) = f.opt("memo") {
                        body["memo"] = json!(memo);
                    }
                    web.wallet_action(
                        &m,
                        &f,
                        "send",
                        &["kind", "total", "shares", "memo", "pay_password"],
                        (Method::POST, "/wallet/v1/red-packets".into(), Some(body)),
                        |p| {
                            format!(
                                "Red packet of {} ready. Share its id: {}",
                                yuan(str_of(&p["total"])),
                                str_of(&p["red_packet_id"])
                            )
                        },
                    )
                    .await
                }
            },
        },
        "claim" => match f.opt("red_packet_id") {
            Some(id) if super::safe_id(id) => {
                let path = format!("/wallet/v1/red-packets/{id}/claim");
                web.wallet_action(&m, &f, "claim", &["red_packet_id"], (Method::POST, path, None), |p| {
                    format!("You got {}!", yuan(str_of(&p["my_share"]).trim_start_matches('+')))
                })
                .await
            }
            _ => Notice::invalid("claim", "red_packet_id", "Enter the red packet's id", &f),
        },
        _ => Notice::default(),
    };
    packets_screen(&m, &notice)
}

// ---- bills ----

#[derive(Deserialize, Default)]
struct BillQuery {
    biller_id: Option<String>,
    customer_account: Option<String>,
}

async fn bills_page(
    State(web): State<WebState>,
    headers: HeaderMap,
    q: Result<Query<BillQuery>, QueryRejection>,
) -> Response {
    let q = q.ok().map(|Query(q)| q).unwrap_or_default();
    match me(&web, &headers).await {
        Err(res) => res,
        Ok(None) => see_other(PATH),
        Ok(Some(m)) => bills_screen(&web, &m, &q, &Notice::default()).await,
    }
}

async fn bills_screen(web: &WebState, m: &Me, q: &BillQuery, notice: &Notice) -> Response {
    let billers = web.api.call(m.actor(), Method::GET, "/wallet/v1/billers", None, None).await.unwrap_or_default();
    let billers = list(&billers["billers"]);
    let labels: Vec<(String, String)> = billers
        .iter()
        .map(|b| (str_of(&b["biller_id"]).to_owned(), format!("{} ({})", str_of(&b["name"]), str_of(&b["category"]))))
        .collect();
    let options: Vec<(&str, &str)> = labels.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let (biller_id, account) =
        (q.biller_id.as_deref().unwrap_or(""), q.customer_account.as_deref().unwrap_or("").trim());
    let mut search_error: Option<ApiFailure> = None;
    let mut found = Vec::new();
    if !biller_id.is_empty() && !account.is_empty() {
        let path = format!(
            "/wallet/v1/bills?{}",
            serde_urlencoded::to_string([("biller_id", biller_id), ("customer_account", account)]).unwrap_or_default()
        );
        match web.api.call(m.actor(), Method::GET, &path, None, None).await {
            Ok(v) => found = list(&v["bills"]).to_vec(),
            Err(e) => search_error = Some(e),
        }
    }
    let partial = billers
        .iter()
        .any(|b| str_of(&b["biller_id"]) == biller_id && b["allows_partial_payment"].as_bool() == Some(true));
    screen(
        "Bills",
        Some(m),
        html! {
            (flash(notice))
            form.card method="get" action="/wallet/bills" {
                h2 { "Find my bills" }
                @if billers.is_empty() { p.empty { "No billers yet." } }
                (field(notice, "find", "biller_id", "Company", Input::Select(&options), biller_id))
                (field(notice, "find", "customer_account", "Customer account number", Input::Text, account))
                @if let Some(e) = &search_error { p.form-error role="alert" { (e.message) } }
                button type="submit" { "Find" }
            }
            @for b in &found {
                section.card.bill {
                    div.row { span { (str_of(&b["period"])) " " (str_of(&b["description"])) } strong { (yuan(str_of(&b["amount"]))) } }
                    p.hint { "Due " (str_of(&b["due_date"])) " · paid " (yuan(str_of(&b["paid"]))) " · " (badge(str_of(&b["status"]))) }
                    @if str_of(&b["status"]) == "UNPAID" || str_of(&b["status"]) == "PARTIALLY_PAID" {
                        (form(notice, "pay_bill", "/wallet/bills", &m.csrf, "Pay bill", html! {
                            input type="hidden" name="key" value=(form_key());
                            input type="hidden" name="bill_id" value=(str_of(&b["bill_id"]));
                            input type="hidden" name="biller_id" value=(biller_id);
                            input type="hidden" name="customer_account" value=(account);
                            @if partial { (field(notice, "pay_bill", "amount", "Amount (empty for all of it)", Input::Amount, "")) }
                            (field(notice, "pay_bill", "pay_password", "Pay password", Input::PayPassword, ""))
                        }))
                    }
                }
            }
        },
    )
}

async fn bills_post(State(web): State<WebState>, headers: HeaderMap, FormData(f): FormData) -> Response {
    let m = match poster(&web, &headers, &f, "/wallet/bills").await {
        Ok(m) => m,
        Err(res) => return res,
    };
    let q = BillQuery {
        biller_id: f.opt("biller_id").map(str::to_owned),
        customer_account: f.opt("customer_account").map(str::to_owned),
    };
    let notice = match required("pay_bill", &f, &[("pay_password", "Enter your pay password")]) {
        Err(n) => n,
        Ok(()) => {
            let mut body = json!({ "bill_id": f.get("bill_id"), "pay_password": f.get("pay_password") });
            if let Some(amount) = f.opt("amount") {
                body["amount"] = json!(amount);
            }
            web.wallet_action(
                &m,
                &f,
                "pay_bill",
                &["amount", "pay_password"],
                (Method::POST, "/wallet/v1/bill-payments".into(), Some(body)),
                |p| format!("Bill paid: {}.", yuan(str_of(&p["amount"]))),
            )
            .await
        }
    };
    bills_screen(&web, &m, &q, &notice).await
}
