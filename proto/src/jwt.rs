//! HS256 JSON Web Tokens: the kinds the gateway signs and the kinds it accepts.
//!
//! `jsonwebtoken` does the token itself (shape, base64, the algorithm pinned
//! to HS256, a constant-time MAC check); this module says which claims each
//! kind carries and checks them against a `now` passed in, so that the rules
//! below are unit-tested without a clock.
//!
//! | kind | signed by | claims | accepted by |
//! |---|---|---|---|
//! | callback | the edge | `iss="slip-sockets"`, `aud="WebSocketEvent"`, `iat`, `exp=iat+60` | backends |
//! | `Grip-Sig` | the edge | `iss=<--grip-sig-iss>`, `exp=now+3600`, [`KIND_CLAIM`]`="grip-sig"` | WebSocket-over-HTTP backends |
//! | control | backends | `iss="slip-sockets"`, `aud="ControlEvent"`, `iat`, `exp` | gRPC, HTTP JSON, GRIP publish |
//! | GRIP publisher | GRIP libraries | any `iss`, `exp`, no `aud` | GRIP publish |
//!
//! No control API accepts a kind the gateway signs itself (docs/security.md): the
//! SLIP APIs want `aud="ControlEvent"`, and GRIP publishing refuses any
//! audience but that one and any token carrying [`KIND_CLAIM`], so a callback
//! token or a `Grip-Sig` seen in a backend's logs publishes nothing.
//! Verification has zero leeway on `exp` and takes `aud` as a string or an
//! array, like the original.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The issuer of every SLIP token.
pub const ISSUER: &str = "slip-sockets";
/// Audience of tokens on callbacks (edge → backend).
pub const AUD_WEBSOCKET_EVENT: &str = "WebSocketEvent";
/// Audience of tokens on control requests (backend → control plane).
pub const AUD_CONTROL_EVENT: &str = "ControlEvent";
/// Lifetime of a token we sign, in seconds.
pub const TOKEN_TTL_SECS: u64 = 60;
/// Longest token we try to verify, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Shortest shared secret the gateway starts with, in bytes: HS256's own
/// key size, so the secret is not the weak point of the MAC.
pub const MIN_SECRET_BYTES: usize = 32;
/// A claim the gateway puts on tokens that, by their claims alone, would
/// pass for a token a backend signs (`Grip-Sig` looks like a GRIP
/// publisher's token). Control APIs refuse any token that carries it.
pub const KIND_CLAIM: &str = "slip_kind";
/// [`KIND_CLAIM`]'s value on `Grip-Sig` tokens.
pub const KIND_GRIP_SIG: &str = "grip-sig";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Longer than the limit.
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    /// Not three base64url parts.
    #[error("token is not three base64url parts separated by dots")]
    Malformed,
    /// Not HS256.
    #[error("token header is not HS256")]
    Algorithm,
    /// Not signed with the shared secret.
    #[error("token signature does not match the shared secret")]
    Signature,
    /// The claims are not what a token must carry (why).
    #[error("token claims are not valid JSON claims: {0}")]
    Claims(String),
    /// Another issuer (the one it names).
    #[error("token issuer is {0:?}, expected {ISSUER:?}")]
    Issuer(String),
    /// Not for this audience (the one wanted).
    #[error("token audience does not include {0:?}")]
    Audience(String),
    /// Lives longer than allowed: its lifetime and the limit, in seconds.
    #[error("token lives {0} s (exp - iat); at most {1} s")]
    TooLongLived(u64, u64),
    /// Issued ahead of this clock by more than the leeway (seconds).
    #[error("token issued in the future (iat {0} s ahead)")]
    IssuedInFuture(u64),
    /// One the gateway signed (callback, `Grip-Sig`): never a credential.
    #[error("token is a {0} the gateway issued, not a credential")]
    GatewayIssued(String),
    /// Its `exp` has passed.
    #[error("token expired")]
    Expired,
    /// Its `nbf` has not come.
    #[error("token is not valid yet")]
    NotYetValid,
    /// A shared secret too short to sign with (its length).
    #[error("the shared secret is {0} bytes; it must be at least {MIN_SECRET_BYTES}")]
    WeakSecret(usize),
}

/// Refuses a shared secret too short to sign with (docs/security.md).
pub fn check_secret(secret: &[u8]) -> Result<(), JwtError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(JwtError::WeakSecret(secret.len()));
    }
    Ok(())
}

/// A token's `aud`: one audience or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
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

/// The claims of a SLIP token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: always [`ISSUER`].
    pub iss: String,
    /// Audience: who it is for.
    pub aud: Audience,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Claims of a `Grip-Sig` token, as Pushpin signs them plus our kind marker.
#[derive(Serialize)]
struct GripSigClaims<'a> {
    iss: &'a str,
    exp: u64,
    #[serde(rename = "slip_kind")]
    kind: &'static str,
}

/// Signs a token for `audience`, issued at `now` (Unix seconds).
pub fn sign(secret: &[u8], audience: &str, now: u64) -> String {
    sign_for(secret, audience, now, TOKEN_TTL_SECS)
}

/// Signs a token for `audience`, issued at `now`, good for `ttl_secs`.
pub fn sign_for(secret: &[u8], audience: &str, now: u64, ttl_secs: u64) -> String {
    let claims = Claims {
        iss: ISSUER.to_owned(),
        aud: Audience::One(audience.to_owned()),
        iat: now,
        exp: now + ttl_secs,
        nbf: None,
    };
    encode(secret, &claims)
}

/// Lifetime of a `Grip-Sig` token, in seconds (Pushpin's).
pub const GRIP_SIG_TTL_SECS: u64 = 3600;

/// Signs a `Grip-Sig` token as Pushpin does for WebSocket-over-HTTP backends:
/// `{"iss": issuer, "exp": now + 3600}`, which GRIP libraries' `validate_sig`
/// checks, plus [`KIND_CLAIM`], which they ignore and our control APIs refuse.
pub fn sign_grip(secret: &[u8], issuer: &str, now: u64) -> String {
    encode(secret, &GripSigClaims { iss: issuer, exp: now + GRIP_SIG_TTL_SECS, kind: KIND_GRIP_SIG })
}

fn encode(secret: &[u8], claims: &impl Serialize) -> String {
    // HS256 over claims made of strings and integers fails only for an empty
    // key, which `check_secret` keeps out at start; an empty token then
    // verifies nowhere.
    EncodingKey::from_secret(secret)
        .and_then(|key| jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key))
        .unwrap_or_default()
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
    /// A signer of SLIP tokens for `audience` with `secret`.
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
    let claims: Claims = signed_claims(token, secret)?;
    if claims.iss != ISSUER {
        return Err(JwtError::Issuer(claims.iss));
    }
    if !claims.aud.contains(audience) {
        return Err(JwtError::Audience(audience.to_owned()));
    }
    check_time(claims.exp, claims.nbf, now)?;
    Ok(claims)
}

/// How far ahead of the gateway's clock a control token's `iat` may be:
/// the clock skew allowed between a backend and the gateway.
pub const IAT_LEEWAY_SECS: u64 = 60;
/// Default for the longest a control token may live (`exp - iat`).
pub const DEFAULT_MAX_TOKEN_SECS: u64 = 3600;

/// A control token's lifetime: at most `max_secs` from `iat` to `exp`,
/// and not issued more than [`IAT_LEEWAY_SECS`] ahead of `now`. A control
/// token is for one request or a short run of them; one good for years is
/// a leaked credential waiting to happen.
pub fn check_lifetime(claims: &Claims, max_secs: u64, now: u64) -> Result<(), JwtError> {
    if claims.iat > now.saturating_add(IAT_LEEWAY_SECS) {
        return Err(JwtError::IssuedInFuture(claims.iat - now));
    }
    let lives = claims.exp.saturating_sub(claims.iat);
    if lives > max_secs {
        return Err(JwtError::TooLongLived(lives, max_secs));
    }
    Ok(())
}

/// Claims of a GRIP publisher's token. GRIP libraries sign `{"iss": <any>, "exp": …}`
/// with the shared key and no audience; `aud` and [`KIND_CLAIM`] are read
/// only to refuse the gateway's own tokens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GripClaims {
    /// Issuer: any.
    #[serde(default)]
    pub iss: Option<String>,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// Not before.
    #[serde(default)]
    pub nbf: Option<u64>,
    /// Audience, read only to refuse the gateway's own tokens.
    #[serde(default)]
    pub aud: Option<Audience>,
    /// [`KIND_CLAIM`], read only to refuse the gateway's own tokens.
    #[serde(default, rename = "slip_kind")]
    pub kind: Option<String>,
}

/// Verifies a GRIP publisher's token: signature, `exp > now`, `nbf <= now`;
/// any issuer; no audience or `ControlEvent`; not a token the gateway signed.
pub fn verify_grip(token: &str, secret: &[u8], now: u64) -> Result<GripClaims, JwtError> {
    let claims: GripClaims = signed_claims(token, secret)?;
    if let Some(kind) = &claims.kind {
        return Err(JwtError::GatewayIssued(kind.clone()));
    }
    if claims.aud.as_ref().is_some_and(|aud| !aud.contains(AUD_CONTROL_EVENT)) {
        return Err(JwtError::Audience(AUD_CONTROL_EVENT.to_owned()));
    }
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

/// The claims of an HS256 token whose signature matches `secret`. Time, issuer
/// and audience are the caller's to check, against its own `now`.
fn signed_claims<T: serde::de::DeserializeOwned>(token: &str, secret: &[u8]) -> Result<T, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong);
    }
    let key = DecodingKey::from_secret(secret).map_err(|_| JwtError::Signature)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<T>(token, &key, &validation).map(|data| data.claims).map_err(|e| match e.into_kind() {
        ErrorKind::InvalidSignature => JwtError::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
            JwtError::Algorithm
        }
        ErrorKind::Json(e) => JwtError::Claims(e.to_string()),
        _ => JwtError::Malformed,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// A token with any claims and header algorithm, signed with `secret`.
    fn token(secret: &[u8], claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret).unwrap())
            .unwrap()
    }

    #[test]
    fn grip_tokens_need_the_key_and_a_future_exp_only() {
        let good = token(SECRET, json!({"iss": "my-app", "exp": 2000}));
        assert_eq!(verify_grip(&good, SECRET, 1000).unwrap().iss.as_deref(), Some("my-app"));
        assert_eq!(verify_grip(&good, b"other", 1000), Err(JwtError::Signature));
        assert_eq!(verify_grip(&good, SECRET, 2000), Err(JwtError::Expired));
        let no_exp = token(SECRET, json!({"iss": "my-app"}));
        assert!(matches!(verify_grip(&no_exp, SECRET, 1000), Err(JwtError::Claims(_))));
        // A SLIP control token is a valid GRIP token too.
        assert!(verify_grip(&sign(SECRET, AUD_CONTROL_EVENT, 1000), SECRET, 1000).is_ok());
    }

    #[test]
    fn no_token_the_gateway_signs_is_a_publish_credential() {
        // A Grip-Sig: what GRIP libraries check still holds...
        let sig = sign_grip(SECRET, "pushpin", 1000);
        let claims: serde_json::Value = signed_claims(&sig, SECRET).unwrap();
        assert_eq!((claims["iss"].as_str(), claims["exp"].as_u64()), (Some("pushpin"), Some(4600)));
        // ...but it publishes nothing, and neither does a callback token.
        assert_eq!(verify_grip(&sig, SECRET, 1000), Err(JwtError::GatewayIssued("grip-sig".into())));
        let callback = sign(SECRET, AUD_WEBSOCKET_EVENT, 1000);
        assert!(matches!(verify_grip(&callback, SECRET, 1000), Err(JwtError::Audience(_))));
        for token in [&sig, &callback] {
            assert!(verify(token, SECRET, AUD_CONTROL_EVENT, 1000).is_err());
        }
    }

    #[test]
    fn a_signer_reuses_its_token_within_a_second_only() {
        let signer = Signer::new(SECRET, AUD_WEBSOCKET_EVENT);
        let first = signer.token(1_000);
        assert!(std::sync::Arc::ptr_eq(&first, &signer.token(1_000)));
        assert_eq!(&*first, sign(SECRET, AUD_WEBSOCKET_EVENT, 1_000));
        let next = signer.token(1_001);
        assert_ne!(first, next);
        assert_eq!(verify(&next, SECRET, AUD_WEBSOCKET_EVENT, 1_001).unwrap().iat, 1_001);
    }

    #[test]
    fn round_trip() {
        let token = sign(SECRET, AUD_CONTROL_EVENT, 1000);
        let claims = verify(&token, SECRET, AUD_CONTROL_EVENT, 1000).unwrap();
        assert_eq!(claims.exp, 1060);
        assert_eq!(claims.iss, ISSUER);
    }

    #[test]
    fn rejects_wrong_secret_issuer_audience_and_time() {
        let token_ = sign(SECRET, AUD_CONTROL_EVENT, 1000);
        assert_eq!(verify(&token_, b"other", AUD_CONTROL_EVENT, 1000), Err(JwtError::Signature));
        assert!(matches!(verify(&token_, SECRET, AUD_WEBSOCKET_EVENT, 1000), Err(JwtError::Audience(_))));
        // Zero leeway: valid up to, not including, exp.
        assert!(verify(&token_, SECRET, AUD_CONTROL_EVENT, 1059).is_ok());
        assert_eq!(verify(&token_, SECRET, AUD_CONTROL_EVENT, 1060), Err(JwtError::Expired));
        let other_issuer = token(SECRET, json!({"iss": "x", "aud": "ControlEvent", "iat": 1, "exp": 100}));
        assert_eq!(verify(&other_issuer, SECRET, AUD_CONTROL_EVENT, 50), Err(JwtError::Issuer("x".into())));
        let early = token(SECRET, json!({"iss": ISSUER, "aud": "ControlEvent", "iat": 1, "exp": 100, "nbf": 60}));
        assert_eq!(verify(&early, SECRET, AUD_CONTROL_EVENT, 50), Err(JwtError::NotYetValid));
    }

    #[test]
    fn accepts_audience_arrays() {
        let t = token(SECRET, json!({"iss": ISSUER, "aud": ["x", "ControlEvent"], "iat": 1, "exp": 100}));
        assert!(verify(&t, SECRET, AUD_CONTROL_EVENT, 50).is_ok());
    }

    #[test]
    fn rejects_other_algorithms_and_garbage() {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let claims = b64(r#"{"iss":"slip-sockets","aud":"ControlEvent","iat":1,"exp":100}"#);
        let none = format!("{}.{claims}.", b64(r#"{"alg":"none"}"#));
        assert!(verify(&none, SECRET, AUD_CONTROL_EVENT, 50).is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &json!({}),
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap();
        assert_eq!(verify(&hs512, SECRET, AUD_CONTROL_EVENT, 50), Err(JwtError::Algorithm));
        for garbage in ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"] {
            assert!(verify(garbage, SECRET, AUD_CONTROL_EVENT, 50).is_err());
        }
        assert_eq!(verify(&"a".repeat(MAX_TOKEN_BYTES + 1), SECRET, AUD_CONTROL_EVENT, 50), Err(JwtError::TooLong));
    }

    #[test]
    fn secrets_shorter_than_32_bytes_are_refused() {
        assert_eq!(check_secret(b""), Err(JwtError::WeakSecret(0)));
        assert_eq!(check_secret(&SECRET[..31]), Err(JwtError::WeakSecret(31)));
        assert_eq!(check_secret(SECRET), Ok(()));
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }
}
