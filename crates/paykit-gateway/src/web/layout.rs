//! The page shell, people-facing formatting, and form fields that show their own errors.

use std::collections::HashMap;

use maud::{DOCTYPE, Markup, html};

use super::api::ApiFailure;

/// Which of the two web apps a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    Console,
    Wallet,
}

pub fn page(app: App, title: &str, body: Markup) -> Markup {
    let (class, script) = match app {
        App::Console => ("console", "/assets/console.js"),
        App::Wallet => ("wallet", "/assets/wallet.js"),
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · paykit" }
                link rel="stylesheet" href="/assets/paykit.css";
                script src=(script) defer {}
            }
            body class=(class) {
                main { (body) }
            }
        }
    }
}

/// An amount as people read it: `12.30` → `¥12.30`. The API's exact decimal string is kept,
/// only the sign and the currency symbol are added.
pub fn yuan(amount: &str) -> String {
    match amount.strip_prefix('-') {
        Some(rest) => format!("-¥{rest}"),
        None => format!("¥{amount}"),
    }
}

/// A JSON string field of an API answer, or "" (pages show what is there).
pub fn str_of(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("")
}

/// An RFC 3339 time as a short local (Beijing) time, for lists.
pub fn short_time(rfc3339: &str) -> String {
    paykit_core::time::Timestamp::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.unix_secs() + 8 * 3600).ok())
        .map_or_else(
            || rfc3339.to_owned(),
            |t| {
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                )
            },
        )
}

/// What the last form submission left to show: a success line, or errors by field, with
/// the values the person typed (never passwords) so they need not type them again.
#[derive(Debug, Default)]
pub struct Notice {
    form: Option<&'static str>,
    ok: Option<String>,
    errors: Vec<(Option<String>, String)>,
    values: HashMap<String, String>,
}

impl Notice {
    pub fn ok(message: impl Into<String>) -> Notice {
        Notice { ok: Some(message.into()), ..Notice::default() }
    }

    /// One field of `form` is wrong.
    pub fn invalid(form: &'static str, field: &str, message: impl Into<String>, values: &Fields) -> Notice {
        Notice {
            form: Some(form),
            errors: vec![(Some(field.to_owned()), message.into())],
            values: values.kept(),
            ..Notice::default()
        }
    }

    /// The API refused what `form` sent: the message goes next to the field it blames, or
    /// at the top of the form when it blames none of the form's fields.
    pub fn refused(form: &'static str, form_fields: &[&str], failure: &ApiFailure, values: &Fields) -> Notice {
        let field = blamed_field(&failure.code, failure.field.as_deref(), form_fields);
        let message = if failure.is_fault() {
            "Something went wrong on our side. Nothing was charged twice; please try again.".to_owned()
        } else {
            human_message(failure)
        };
        Notice { form: Some(form), errors: vec![(field, message)], values: values.kept(), ..Notice::default() }
    }

    pub fn success(&self) -> Option<&str> {
        self.ok.as_deref()
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    fn error(&self, form: &str, field: Option<&str>) -> Option<&str> {
        if self.form != Some(form) {
            return None;
        }
        self.errors.iter().find(|(f, _)| f.as_deref() == field).map(|(_, m)| m.as_str())
    }

    fn value(&self, form: &str, field: &str) -> Option<&str> {
        if self.form != Some(form) {
            return None;
        }
        self.values.get(field).map(String::as_str)
    }
}

/// The API's message, with the unlock time where there is one.
fn human_message(failure: &ApiFailure) -> String {
    let mut message = failure.message.clone();
    if let Some(until) = failure.body["unlock_at"].as_str() {
        message = format!("{message} (until {})", short_time(until));
    }
    if let Some(first) = message.get(..1) {
        message = first.to_uppercase() + &message[1..];
    }
    message
}

/// Which form field an error code is about, when the API did not name one.
fn blamed_field(code: &str, api_field: Option<&str>, form_fields: &[&str]) -> Option<String> {
    let by_code = match code {
        c if c.starts_with("PAY_PASSWORD_") => "pay_password",
        c if c.starts_with("AMOUNT_") => "amount",
        c if c.starts_with("AUTH_CODE_") => "auth_code",
        c if c.starts_with("PHONE_") => "phone",
        c if c.starts_with("CARD_") => "card_number",
        "INSUFFICIENT_BALANCE" | "REFUND_EXCEEDS_PAID" | "TRANSFER_LIMIT_EXCEEDED" | "BILL_AMOUNT_INVALID" => "amount",
        "LOGIN_FAILED" | "PASSWORD_INVALID" => "password",
        "ID_NUMBER_INVALID" => "id_number",
        "QR_CODE_INVALID" => "code_url",
        "PAYEE_INVALID" => "payee",
        _ => "",
    };
    [api_field, Some(by_code)].into_iter().flatten().find(|f| form_fields.contains(f)).map(str::to_owned)
}

/// A submitted form's fields.
#[derive(Debug, Default, Clone)]
pub struct Fields(pub HashMap<String, String>);

impl Fields {
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// A trimmed field, or `None` when empty.
    pub fn opt(&self, name: &str) -> Option<&str> {
        Some(self.get(name).trim()).filter(|v| !v.is_empty())
    }

    /// What to put back in the form after an error: everything but secrets.
    fn kept(&self) -> HashMap<String, String> {
        self.0
            .iter()
            .filter(|(k, _)| !k.contains("password") && !matches!(k.as_str(), "csrf" | "card_number" | "id_number"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The kinds of input a form has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    Text,
    /// Yuan with up to two decimals; never a number input, so no float ever touches it.
    Amount,
    Password,
    /// Six digits, masked.
    PayPassword,
    Phone,
    /// Digits such as a payment code or a card number.
    Digits,
    Date,
    Select(&'a [(&'a str, &'a str)]),
}

/// A labelled field whose error, when the last submission had one, sits right under it.
pub fn field(notice: &Notice, form: &str, name: &str, label: &str, input: Input<'_>, default: &str) -> Markup {
    let id = format!("{form}-{name}");
    let error = notice.error(form, Some(name));
    let value = notice.value(form, name).unwrap_or(default);
    let error_id = format!("{id}-error");
    html! {
        div class={ "field" @if error.is_some() { " has-error" } } {
            label for=(id) { (label) }
            @match input {
                Input::Select(options) => {
                    select id=(id) name=(name) {
                        @for (v, text) in options {
                            option value=(v) selected[*v == value] { (text) }
                        }
                    }
                }
                _ => {
                    @let (kind, mode, auto, extra_class) = match input {
                        Input::Amount => ("text", Some("decimal"), "off", "amount"),
                        Input::Password => ("password", None, "current-password", ""),
                        Input::PayPassword => ("password", Some("numeric"), "off", "pay-password"),
                        Input::Phone => ("tel", Some("tel"), "tel", ""),
                        Input::Digits => ("text", Some("numeric"), "off", ""),
                        Input::Date => ("date", None, "off", ""),
                        _ => ("text", None, "off", ""),
                    };
                    div class={ "input " (extra_class) } {
                        @if input == Input::Amount { span.currency { "¥" } }
                        input id=(id) name=(name) type=(kind) inputmode=[mode] autocomplete=(auto)
                            value=[(!matches!(input, Input::Password | Input::PayPassword)).then_some(value)]
                            placeholder=[(input == Input::Amount).then_some("0.00")]
                            maxlength=[(input == Input::PayPassword).then_some("6")]
                            aria-invalid=[error.is_some().then_some("true")]
                            aria-describedby=[error.is_some().then_some(error_id.as_str())];
                    }
                }
            }
            @if let Some(message) = error {
                p.field-error id=(error_id) role="alert" { (message) }
            }
        }
    }
}

/// A form posting to `action`, with its CSRF token and its own name (so the page knows
/// which form to blame), and room at the top for an error that blames no one field.
pub fn form(notice: &Notice, name: &'static str, action: &str, csrf: &str, button: &str, fields: Markup) -> Markup {
    html! {
        form.card method="post" action=(action) novalidate data-form=(name) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="form" value=(name);
            @if let Some(message) = notice.error(name, None) {
                p.form-error role="alert" { (message) }
            }
            (fields)
            button type="submit" { (button) }
        }
    }
}

/// The success line of the last action, if any.
pub fn flash(notice: &Notice) -> Markup {
    html! {
        @if let Some(message) = notice.success() {
            p.flash role="status" { (message) }
        }
    }
}

/// A status as a coloured badge.
pub fn badge(status: &str) -> Markup {
    let class = match status {
        "SUCCESS" | "APPROVED" | "FORCED" | "ACCEPTED" => "ok",
        "NOTPAY" | "USERPAYING" | "PENDING" | "PROCESSING" | "ESCALATED" => "wait",
        "REFUND" | "REFUSED" | "UPHELD" => "info",
        _ => "off",
    };
    html! { span class={ "badge " (class) } { (status) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_keep_their_exact_digits() {
        assert_eq!(yuan("12.30"), "¥12.30");
        assert_eq!(yuan("-0.01"), "-¥0.01");
        assert_eq!(yuan("1000000.00"), "¥1000000.00");
    }

    #[test]
    fn errors_are_blamed_on_the_field_the_form_has() {
        let fields = ["amount", "pay_password"];
        assert_eq!(blamed_field("PAY_PASSWORD_WRONG", None, &fields).as_deref(), Some("pay_password"));
        assert_eq!(blamed_field("INVALID_FIELD", Some("amount"), &fields).as_deref(), Some("amount"));
        assert_eq!(blamed_field("AMOUNT_TOO_PRECISE", None, &fields).as_deref(), Some("amount"));
        assert_eq!(blamed_field("ORDER_PAID", None, &fields), None);
        assert_eq!(blamed_field("INVALID_FIELD", Some("description"), &fields), None);
    }

    #[test]
    fn passwords_are_never_put_back_in_a_form() {
        let fields = Fields(
            [("pay_password", "123456"), ("amount", "1.00"), ("csrf", "x")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        );
        let kept = fields.kept();
        assert_eq!(kept.get("amount").map(String::as_str), Some("1.00"));
        assert!(!kept.contains_key("pay_password") && !kept.contains_key("csrf"));
    }
}
