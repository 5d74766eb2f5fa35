//! HS256 JSON Web Tokens, as SLIP v4 uses them in both directions.
//!
//! Callbacks carry `aud="WebSocketEvent"`, control requests `aud="ControlEvent"`;
//! both have `iss="slip-sockets"` and `exp = iat + 60`. Verification has zero
//! leeway on `exp` and accepts `aud` as a string or an array, like the original.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const ISSUER: &str = "slip-sockets";
/// Audience of tokens on callbacks (edge → backend).
pub const AUD_WEBSOCKET_EVENT: &str = "WebSocketEvent";
/// Audience of tokens on control requests (backend → control plane).
pub const AUD_CONTROL_EVENT: &str = "ControlEvent";
/// Lifetime of a token we sign, in seconds.
pub const TOKEN_TTL_SECS: u64 = 60;
/// Longest token we try to verify, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("token is not three base64url parts separated by dots")]
    Malformed,
    #[error("token header is not HS256")]
    Algorithm,
    #[error("token signature does not match the shared secret")]
    Signature,
    #[error("token claims are not valid JSON claims: {0}")]
    Claims(String),
    #[error("token issuer is {0:?}, expected {ISSUER:?}")]
    Issuer(String),
    #[error("token audience does not include {0:?}")]
    Audience(String),
    #[error("token expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(all) => all.iter().any(|a| a == aud),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: Audience,
    pub iat: u64,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Signs a token for `audience`, issued at `now` (Unix seconds).
pub fn sign(secret: &[u8], audience: &str, now: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = Claims {
        iss: ISSUER.to_owned(),
        aud: Audience::One(audience.to_owned()),
        iat: now,
        exp: now + TOKEN_TTL_SECS,
        nbf: None,
    };
    // Serializing a struct of strings and integers cannot fail.
    let claims = serde_json::to_vec(&claims).unwrap_or_default();
    let mut token = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let signature = mac(secret, token.as_bytes()).finalize().into_bytes();
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}

/// Lifetime of a `Grip-Sig` token, in seconds (Pushpin's).
pub const GRIP_SIG_TTL_SECS: u64 = 3600;

/// Signs a `Grip-Sig` token as Pushpin does for WebSocket-over-HTTP backends:
/// `{"iss": issuer, "exp": now + 3600}`, which GRIP libraries' `validate_sig` checks.
pub fn sign_grip(secret: &[u8], issuer: &str, now: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({"iss": issuer, "exp": now + GRIP_SIG_TTL_SECS});
    let mut token = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = mac(secret, token.as_bytes()).finalize().into_bytes();
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}

/// Signs tokens for one audience, at most once per second. A token's claims
/// change only when the clock's second does, so every request in the same
/// second can carry the same token; signing per request was a fifth of the
/// edge's instructions on a connect-heavy run (docs/benchmarks.md).
pub struct Signer {
    secret: Vec<u8>,
    claims: SignerClaims,
    last: std::sync::Mutex<Option<(u64, std::sync::Arc<str>)>>,
}

#[derive(Debug)]
enum SignerClaims {
    /// SLIP tokens: `iss="slip-sockets"`, this audience, `exp = iat + 60`.
    Slip(&'static str),
    /// `Grip-Sig` tokens, as Pushpin signs them: this issuer, `exp = now + 3600`.
    Grip(String),
}

impl Signer {
    pub fn new(secret: &[u8], audience: &'static str) -> Self {
        Self { secret: secret.to_vec(), claims: SignerClaims::Slip(audience), last: std::sync::Mutex::new(None) }
    }

    /// A signer of `Grip-Sig` tokens (see [`sign_grip`]).
    pub fn grip(secret: &[u8], issuer: &str) -> Self {
        Self {
            secret: secret.to_vec(),
            claims: SignerClaims::Grip(issuer.to_owned()),
            last: std::sync::Mutex::new(None),
        }
    }

    /// A token issued at `now` (Unix seconds), the same one all through that second.
    pub fn token(&self, now: u64) -> std::sync::Arc<str> {
        // A poisoned lock only means another thread panicked between two plain assignments.
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*last {
            Some((at, token)) if *at == now => token.clone(),
            _ => {
                let token: std::sync::Arc<str> = match &self.claims {
                    SignerClaims::Slip(audience) => sign(&self.secret, audience, now),
                    SignerClaims::Grip(issuer) => sign_grip(&self.secret, issuer, now),
                }
                .into();
                *last = Some((now, token.clone()));
                token
            }
        }
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("claims", &self.claims).finish_non_exhaustive()
    }
}

/// Verifies a token: signature, `iss`, `aud` containing `audience`, `exp > now`, `nbf <= now`.
pub fn verify(token: &str, secret: &[u8], audience: &str, now: u64) -> Result<Claims, JwtError> {
    let claims: Claims =
        serde_json::from_slice(&signed_claims(token, secret)?).map_err(|e| JwtError::Claims(e.to_string()))?;
    if claims.iss != ISSUER {
        return Err(JwtError::Issuer(claims.iss));
    }
    if !claims.aud.contains(audience) {
        return Err(JwtError::Audience(audience.to_owned()));
    }
    check_time(claims.exp, claims.nbf, now)?;
    Ok(claims)
}

/// Claims of a GRIP publisher's token. GRIP libraries sign `{"iss": <any>, "exp": …}`
/// with the shared key and no audience, so only these two are read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GripClaims {
    #[serde(default)]
    pub iss: Option<String>,
    pub exp: u64,
    #[serde(default)]
    pub nbf: Option<u64>,
}

/// Verifies a GRIP publisher's token: signature, `exp > now`, `nbf <= now`; any issuer.
pub fn verify_grip(token: &str, secret: &[u8], now: u64) -> Result<GripClaims, JwtError> {
    let claims: GripClaims =
        serde_json::from_slice(&signed_claims(token, secret)?).map_err(|e| JwtError::Claims(e.to_string()))?;
    check_time(claims.exp, claims.nbf, now)?;
    Ok(claims)
}

fn check_time(exp: u64, nbf: Option<u64>, now: u64) -> Result<(), JwtError> {
    if now >= exp {
        return Err(JwtError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now) {
        return Err(JwtError::NotYetValid);
    }
    Ok(())
}

/// The claims JSON of an HS256 token whose signature matches `secret`.
fn signed_claims(token: &str, secret: &[u8]) -> Result<Vec<u8>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let signed = &token[..header.len() + 1 + claims.len()];
    let header_json = URL_SAFE_NO_PAD.decode(header).map_err(|_| JwtError::Malformed)?;
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| JwtError::Malformed)?;
    if header.alg != "HS256" {
        return Err(JwtError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| JwtError::Malformed)?;
    mac(secret, signed.as_bytes()).verify_slice(&signature).map_err(|_| JwtError::Signature)?;
    URL_SAFE_NO_PAD.decode(claims).map_err(|_| JwtError::Malformed)
}

/// Takes the token out of an `Authorization: Bearer <token>` header value.
pub fn bearer(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The current Unix time in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn mac(secret: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token as GRIP libraries make it: `{"iss": …, "exp": …}`, no audience.
    fn grip_token(secret: &[u8], claims: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
        let signature = URL_SAFE_NO_PAD.encode(mac(secret, signed.as_bytes()).finalize().into_bytes());
        format!("{signed}.{signature}")
    }

    #[test]
    fn grip_tokens_need_the_key_and_a_future_exp_only() {
        let good = grip_token(b"k", r#"{"iss":"my-app","exp":2000}"#);
        assert_eq!(verify_grip(&good, b"k", 1000).unwrap().iss.as_deref(), Some("my-app"));
        assert_eq!(verify_grip(&good, b"other", 1000), Err(JwtError::Signature));
        assert_eq!(verify_grip(&good, b"k", 2000), Err(JwtError::Expired));
        let no_exp = grip_token(b"k", r#"{"iss":"my-app"}"#);
        assert!(matches!(verify_grip(&no_exp, b"k", 1000), Err(JwtError::Claims(_))));
        let sig = sign_grip(b"k", "pushpin", 1000);
        assert_eq!(
            verify_grip(&sig, b"k", 1000).unwrap(),
            GripClaims { iss: Some("pushpin".into()), exp: 4600, nbf: None }
        );
        // A SLIP control token is a valid GRIP token too.
        assert!(verify_grip(&sign(b"k", AUD_CONTROL_EVENT, 1000), b"k", 1000).is_ok());
    }

    #[test]
    fn a_signer_reuses_its_token_within_a_second_only() {
        let signer = Signer::new(b"k", AUD_WEBSOCKET_EVENT);
        let first = signer.token(1_000);
        assert!(std::sync::Arc::ptr_eq(&first, &signer.token(1_000)));
        assert_eq!(&*first, sign(b"k", AUD_WEBSOCKET_EVENT, 1_000));
        let next = signer.token(1_001);
        assert_ne!(first, next);
        assert_eq!(verify(&next, b"k", AUD_WEBSOCKET_EVENT, 1_001).unwrap().iat, 1_001);
    }

    const SECRET: &[u8] = b"s3cret";

    #[test]
    fn round_trip() {
        let token = sign(SECRET, AUD_CONTROL_EVENT, 1000);
        let claims = verify(&token, SECRET, AUD_CONTROL_EVENT, 1000).unwrap();
        assert_eq!(claims.exp, 1060);
        assert_eq!(claims.iss, ISSUER);
    }

    #[test]
    fn rejects_wrong_secret_audience_and_time() {
        let token = sign(SECRET, AUD_CONTROL_EVENT, 1000);
        assert_eq!(verify(&token, b"other", AUD_CONTROL_EVENT, 1000), Err(JwtError::Signature));
        assert!(matches!(verify(&token, SECRET, AUD_WEBSOCKET_EVENT, 1000), Err(JwtError::Audience(_))));
        // Zero leeway: valid up to, not including, exp.
        assert!(verify(&token, SECRET, AUD_CONTROL_EVENT, 1059).is_ok());
        assert_eq!(verify(&token, SECRET, AUD_CONTROL_EVENT, 1060), Err(JwtError::Expired));
    }

    #[test]
    fn accepts_audience_arrays() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"iss":"slip-sockets","aud":["x","ControlEvent"],"iat":1,"exp":100}"#);
        let unsigned = format!("{header}.{claims}");
        let sig = URL_SAFE_NO_PAD.encode(mac(SECRET, unsigned.as_bytes()).finalize().into_bytes());
        let token = format!("{unsigned}.{sig}");
        assert!(verify(&token, SECRET, AUD_CONTROL_EVENT, 50).is_ok());
    }

    #[test]
    fn rejects_alg_none_and_garbage() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"iss":"slip-sockets","aud":"ControlEvent","iat":1,"exp":100}"#);
        let token = format!("{header}.{claims}.");
        assert_eq!(verify(&token, SECRET, AUD_CONTROL_EVENT, 50), Err(JwtError::Algorithm));
        for garbage in ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"] {
            assert!(verify(garbage, SECRET, AUD_CONTROL_EVENT, 50).is_err());
        }
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }
}
