//! Both control APIs take `Authorization: Bearer <jwt>` with
//! aud="ControlEvent", living at most `max_token_secs` (`exp - iat`) and not
//! issued ahead of the clock beyond [`jwt::IAT_LEEWAY_SECS`].

use std::sync::Arc;

use slip_proto::jwt::{self, JwtError};

/// The shared secret and the rules a control token must meet.
#[derive(Clone)]
pub struct ControlAuth {
    secret: Arc<[u8]>,
    max_token_secs: u64,
}

impl ControlAuth {
    pub fn new(secret: &[u8], max_token_secs: u64) -> Self {
        Self { secret: secret.into(), max_token_secs }
    }

    /// The shared secret (GRIP publishing checks its own kind of token with it).
    pub fn secret(&self) -> Arc<[u8]> {
        self.secret.clone()
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), JwtError> {
        self.check_at(authorization, jwt::now())
    }

    fn check_at(&self, authorization: Option<&str>, now: u64) -> Result<(), JwtError> {
        let token = authorization.and_then(jwt::bearer).ok_or(JwtError::Malformed)?;
        let claims = jwt::verify(token, &self.secret, jwt::AUD_CONTROL_EVENT, now)?;
        jwt::check_lifetime(&claims, self.max_token_secs, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(claims: serde_json::Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(b"k").unwrap();
        format!("Bearer {}", jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap())
    }

    #[test]
    fn accepts_only_control_tokens_signed_with_the_secret() {
        let auth = ControlAuth::new(b"k", jwt::DEFAULT_MAX_TOKEN_SECS);
        let good = format!("Bearer {}", jwt::sign(b"k", jwt::AUD_CONTROL_EVENT, jwt::now()));
        let callback = format!("Bearer {}", jwt::sign(b"k", jwt::AUD_WEBSOCKET_EVENT, jwt::now()));
        assert!(auth.check(Some(&good)).is_ok());
        assert!(ControlAuth::new(b"other", 3600).check(Some(&good)).is_err());
        assert!(auth.check(Some(&callback)).is_err());
        assert!(auth.check(None).is_err());
        assert!(auth.check(Some("Bearer")).is_err());
    }

    #[test]
    fn a_token_living_too_long_or_issued_ahead_of_the_clock_is_refused() {
        let auth = ControlAuth::new(b"k", 3600);
        let now = 1_800_000_000;
        let token = |iat: u64, exp: u64| {
            bearer(serde_json::json!({"iss": "slip-sockets", "aud": "ControlEvent", "iat": iat, "exp": exp}))
        };
        assert_eq!(auth.check_at(Some(&token(now, now + 3600)), now), Ok(()));
        assert_eq!(
            auth.check_at(Some(&token(now, now + 10 * 365 * 86_400)), now),
            Err(JwtError::TooLongLived(315_360_000, 3600))
        );
        assert_eq!(auth.check_at(Some(&token(now + 60, now + 120)), now), Ok(()), "within the leeway");
        assert_eq!(auth.check_at(Some(&token(now + 86_400, now + 86_460)), now), Err(JwtError::IssuedInFuture(86_400)));
        assert_eq!(
            ControlAuth::new(b"k", 36_000).check_at(Some(&token(now, now + 36_000)), now),
            Ok(()),
            "configurable"
        );
    }
}
