//! Merchant and biller request signing (HMAC-SHA256), as `wire.md` specifies:
//!
//! ```text
//! canonical = METHOD "\n" PATH_AND_QUERY "\n" TIMESTAMP "\n" NONCE "\n" BODY "\n"
//! signature = base64(HMAC-SHA256(api_secret, canonical))
//! Authorization: PAYKIT-HMAC-SHA256 merchant_id="…",key_id="…",timestamp="…",nonce="…",signature="…"
//! ```
//!
//! Callbacks are signed over `TIMESTAMP "\n" NONCE "\n" BODY "\n"` with the same key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::ErrorCode;

pub const AUTH_SCHEME: &str = "PAYKIT-HMAC-SHA256";
/// How far a request's timestamp may be from the server's clock, either way; nonces are
/// remembered for at least this long.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// Which kind of party signed: the header names it `merchant_id` or `biller_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartyKind {
    Merchant,
    Biller,
}

/// A parsed `Authorization` header. Nothing in it is trusted until [`verify_request`] passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub party_kind: PartyKind,
    pub party_id: String,
    pub key_id: String,
    pub timestamp: i64,
    pub nonce: String,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("unknown merchant or key")]
    UnknownKey,
    #[error("signature does not match the request")]
    BadSignature,
    #[error("timestamp is {skew_secs} s from server time (limit {TIMESTAMP_TOLERANCE_SECS} s)")]
    TimestampSkew { skew_secs: i64 },
    #[error("nonce already used")]
    NonceReplayed,
}

impl From<&AuthError> for ErrorCode {
    fn from(e: &AuthError) -> Self {
        match e {
            AuthError::Missing => ErrorCode::AuthMissing,
            AuthError::Malformed(_) => ErrorCode::AuthMalformed,
            AuthError::UnknownKey => ErrorCode::AuthUnknownKey,
            AuthError::BadSignature => ErrorCode::AuthBadSignature,
            AuthError::TimestampSkew { .. } => ErrorCode::AuthTimestampSkew,
            AuthError::NonceReplayed => ErrorCode::AuthNonceReplayed,
        }
    }
}

impl AuthHeader {
    /// Parses `PAYKIT-HMAC-SHA256 k="v",k="v",…`. Every field must appear exactly once;
    /// values may not contain quotes or backslashes (none of ours need them).
    pub fn parse(header: &str) -> Result<AuthHeader, AuthError> {
        let rest = header
            .strip_prefix(AUTH_SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(AuthError::Malformed("scheme must be PAYKIT-HMAC-SHA256"))?;
        let (mut party, mut key_id, mut timestamp, mut nonce, mut signature) = (None, None, None, None, None);
        for field in rest.split(',') {
            let (name, quoted) = field.trim().split_once('=').ok_or(AuthError::Malformed("field without '='"))?;
            let value = quoted
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .filter(|v| !v.contains(['"', '\\']))
                .ok_or(AuthError::Malformed("field value must be in double quotes"))?;
            let slot = match name {
                "merchant_id" | "biller_id" => {
                    let kind = if name == "merchant_id" { PartyKind::Merchant } else { PartyKind::Biller };
                    if party.is_some() {
                        return Err(AuthError::Malformed("party id given twice"));
                    }
                    party = Some((kind, value.to_owned()));
                    continue;
                }
                "key_id" => &mut key_id,
                "timestamp" => &mut timestamp,
                "nonce" => &mut nonce,
                "signature" => &mut signature,
                _ => return Err(AuthError::Malformed("unknown field")),
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(AuthError::Malformed("field given twice"));
            }
        }
        let (party_kind, party_id) = party.ok_or(AuthError::Malformed("merchant_id or biller_id missing"))?;
        let key_id = key_id.ok_or(AuthError::Malformed("key_id missing"))?;
        let timestamp = timestamp.ok_or(AuthError::Malformed("timestamp missing"))?;
        let nonce = nonce.ok_or(AuthError::Malformed("nonce missing"))?;
        let signature = signature.ok_or(AuthError::Malformed("signature missing"))?;
        if party_id.is_empty() || key_id.is_empty() {
            return Err(AuthError::Malformed("empty id"));
        }
        if timestamp.is_empty() || timestamp.len() > 12 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::Malformed("timestamp must be Unix seconds"));
        }
        let timestamp: i64 = timestamp.parse().map_err(|_| AuthError::Malformed("timestamp must be Unix seconds"))?;
        if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(AuthError::Malformed("nonce must be 16-64 characters of [A-Za-z0-9]"));
        }
        Ok(AuthHeader { party_kind, party_id, key_id, timestamp, nonce, signature })
    }

    /// Renders the header a client sends.
    pub fn render(&self) -> String {
        let party = match self.party_kind {
            PartyKind::Merchant => "merchant_id",
            PartyKind::Biller => "biller_id",
        };
        format!(
            "{AUTH_SCHEME} {party}=\"{}\",key_id=\"{}\",timestamp=\"{}\",nonce=\"{}\",signature=\"{}\"",
            self.party_id, self.key_id, self.timestamp, self.nonce, self.signature
        )
    }
}

/// The exact bytes that are signed for a request.
pub fn canonical_request(method: &str, path_and_query: &str, timestamp: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(method.len() + path_and_query.len() + nonce.len() + body.len() + 32);
    out.extend_from_slice(method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(path_and_query.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(timestamp.to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(nonce.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(b'\n');
    out
}

/// The exact bytes that are signed for a callback.
pub fn canonical_callback(timestamp: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nonce.len() + body.len() + 16);
    out.extend_from_slice(timestamp.to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(nonce.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(b'\n');
    out
}

fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// `base64(HMAC-SHA256(secret, message))`.
pub fn sign(secret: &[u8], message: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(message);
    BASE64.encode(m.finalize().into_bytes())
}

/// Constant-time check of a base64 signature over `message`.
pub fn verify(secret: &[u8], message: &[u8], signature_b64: &str) -> bool {
    let Ok(sig) = BASE64.decode(signature_b64) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(message);
    m.verify_slice(&sig).is_ok()
}

/// Checks the timestamp window and the signature. The caller has looked up the key named in
/// the header and, after this passes, records the nonce (a replay check needs storage).
pub fn verify_request(
    header: &AuthHeader,
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_unix_secs: i64,
) -> Result<(), AuthError> {
    let skew_secs = header.timestamp.saturating_sub(now_unix_secs);
    if skew_secs.abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(AuthError::TimestampSkew { skew_secs });
    }
    let canonical = canonical_request(method, path_and_query, header.timestamp, &header.nonce, body);
    if verify(secret, &canonical, &header.signature) { Ok(()) } else { Err(AuthError::BadSignature) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example published in the README; if this changes, the README must too.
    #[test]
    fn readme_worked_example() {
        let secret = b"PAYKITEXAMPLESECRET0123456789abc";
        let canonical = canonical_request("GET", "/v1/merchant", 1_767_225_600, "a1b2c3d4e5f6g7h8", b"");
        assert_eq!(canonical, b"GET\n/v1/merchant\n1767225600\na1b2c3d4e5f6g7h8\n\n");
        assert_eq!(sign(secret, &canonical), "ZuluOLM/0APtd2K3drrYDL/j1+5/JvGefTwsgVW1F4o=");
        let body = br#"{"out_trade_no":"T1001","amount":"12.30","description":"Jasmine tea"}"#;
        let canonical = canonical_request("POST", "/v1/orders", 1_767_225_600, "a1b2c3d4e5f6g7h8", body);
        assert_eq!(sign(secret, &canonical), "u7i7LG/5dy5oEisk2S7WnJFeXUpY5jhfXpbY9Oh+5qU=");
    }

    #[test]
    fn header_round_trips() {
        let h = AuthHeader {
            party_kind: PartyKind::Merchant,
            party_id: "mch_1".into(),
            key_id: "key_1".into(),
            timestamp: 1_700_000_000,
            nonce: "abcdefghijklmnop".into(),
            signature: "c2ln".into(),
        };
        assert_eq!(AuthHeader::parse(&h.render()).unwrap(), h);
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good =
            r#"PAYKIT-HMAC-SHA256 merchant_id="m",key_id="k",timestamp="1",nonce="abcdefghijklmnop",signature="s""#;
        assert!(AuthHeader::parse(good).is_ok());
        for bad in [
            "",
            "Bearer x",
            "PAYKIT-HMAC-SHA256",
            r#"PAYKIT-HMAC-SHA256 merchant_id="m",key_id="k",timestamp="1",nonce="short",signature="s""#,
            r#"PAYKIT-HMAC-SHA256 merchant_id="m",key_id="k",timestamp="x",nonce="abcdefghijklmnop",signature="s""#,
            r#"PAYKIT-HMAC-SHA256 merchant_id="m",key_id="k",timestamp="1",nonce="abcdefghijklmnop""#,
            r#"PAYKIT-HMAC-SHA256 merchant_id="m",merchant_id="m",key_id="k",timestamp="1",nonce="abcdefghijklmnop",signature="s""#,
            r#"PAYKIT-HMAC-SHA256 merchant_id=m,key_id="k",timestamp="1",nonce="abcdefghijklmnop",signature="s""#,
            r#"PAYKIT-HMAC-SHA256 merchant_id="m",key_id="k",timestamp="1",nonce="abcdefgh-jklmnop",signature="s""#,
            r#"PAYKIT-HMAC-SHA256 merchant_id="m",key_id="k",timestamp="1",nonce="abcdefghijklmnop",signature="s",extra="1""#,
        ] {
            assert!(matches!(AuthHeader::parse(bad), Err(AuthError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn every_part_of_the_request_is_covered() {
        let secret = b"secret";
        let now = 1_700_000_000;
        let sig = sign(secret, &canonical_request("POST", "/v1/orders?x=1", now, "abcdefghijklmnop", b"{}"));
        let header = |ts: i64, nonce: &str| AuthHeader {
            party_kind: PartyKind::Merchant,
            party_id: "m".into(),
            key_id: "k".into(),
            timestamp: ts,
            nonce: nonce.into(),
            signature: sig.clone(),
        };
        let ok = header(now, "abcdefghijklmnop");
        assert_eq!(verify_request(&ok, secret, "POST", "/v1/orders?x=1", b"{}", now), Ok(()));
        assert_eq!(verify_request(&ok, secret, "PUT", "/v1/orders?x=1", b"{}", now), Err(AuthError::BadSignature));
        assert_eq!(verify_request(&ok, secret, "POST", "/v1/orders?x=2", b"{}", now), Err(AuthError::BadSignature));
        assert_eq!(verify_request(&ok, secret, "POST", "/v1/orders?x=1", b"{ }", now), Err(AuthError::BadSignature));
        assert_eq!(verify_request(&ok, b"secreT", "POST", "/v1/orders?x=1", b"{}", now), Err(AuthError::BadSignature));
        let other_nonce = header(now, "abcdefghijklmnoq");
        assert_eq!(
            verify_request(&other_nonce, secret, "POST", "/v1/orders?x=1", b"{}", now),
            Err(AuthError::BadSignature)
        );
        let other_ts = header(now + 1, "abcdefghijklmnop");
        assert_eq!(
            verify_request(&other_ts, secret, "POST", "/v1/orders?x=1", b"{}", now),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            verify_request(&ok, secret, "POST", "/v1/orders?x=1", b"{}", now + 301),
            Err(AuthError::TimestampSkew { skew_secs: -301 })
        );
        assert_eq!(verify_request(&ok, secret, "POST", "/v1/orders?x=1", b"{}", now - 300), Ok(()));
    }
}
