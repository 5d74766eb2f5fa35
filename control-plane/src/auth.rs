//! Both control APIs take `Authorization: Bearer <jwt>` with aud="ControlEvent".

use slip_proto::jwt::{self, JwtError};

/// Checks an `Authorization` header value against the shared secret.
pub fn check(secret: &[u8], authorization: Option<&str>) -> Result<(), JwtError> {
    let token = authorization.and_then(jwt::bearer).ok_or(JwtError::Malformed)?;
    jwt::verify(token, secret, jwt::AUD_CONTROL_EVENT, jwt::now()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_control_tokens_signed_with_the_secret() {
        let good = format!("Bearer {}", jwt::sign(b"k", jwt::AUD_CONTROL_EVENT, jwt::now()));
        let callback = format!("Bearer {}", jwt::sign(b"k", jwt::AUD_WEBSOCKET_EVENT, jwt::now()));
        assert!(check(b"k", Some(&good)).is_ok());
        assert!(check(b"other", Some(&good)).is_err());
        assert!(check(b"k", Some(&callback)).is_err());
        assert!(check(b"k", None).is_err());
        assert!(check(b"k", Some("Bearer")).is_err());
    }
}
