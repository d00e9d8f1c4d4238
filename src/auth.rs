//! Access control for a CodeFlux reachable beyond this machine. One shared token
//! (`CODEFLUX_AUTH_TOKEN`) is the credential; everything handed out after a login is signed
//! with it (HMAC-SHA256), so nothing needs storing and a new token invalidates all sessions.
//!
//! - UI sessions: a cookie `<expiry>.<signature>` set after the token is entered once.
//! - API clients: `Authorization: Bearer <token>`.
//! - Previews live on other origins and cannot see the UI's cookie, so the UI hands out
//!   short-lived signed links; opening one sets a cookie for that preview host only.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;
use uuid::Uuid;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub const SESSION_COOKIE: &str = "codeflux_session";
pub const PREVIEW_COOKIE: &str = "codeflux_preview";
/// Path on a preview host that turns a signed link into a preview session.
pub const PREVIEW_AUTH_PATH: &str = "/__codeflux/auth";

const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
const PREVIEW_LINK_LIFETIME: Duration = Duration::from_secs(15 * 60);
const PREVIEW_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Shorter tokens are refused: the token is the only thing between the network and a shell.
pub const MIN_TOKEN_CHARS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "{what} listens on {address}, which other machines can reach: set CODEFLUX_AUTH_TOKEN (at least {MIN_TOKEN_CHARS} characters) so that only people with the token get in, or listen on 127.0.0.1"
    )]
    TokenRequired {
        what: &'static str,
        address: SocketAddr,
    },
    #[error("CODEFLUX_AUTH_TOKEN is too short: use at least {MIN_TOKEN_CHARS} characters")]
    TokenTooShort,
}

/// Wrong tokens allowed in a row before sign-ins must wait.
pub const FREE_SIGN_IN_FAILURES: u32 = 5;

/// The configured token, if any. Without one, everything is open (loopback only).
#[derive(Clone, Default)]
pub struct Auth {
    token: Option<String>,
    /// Failed sign-ins, shared by every clone (one server, one back-off).
    throttle: std::sync::Arc<std::sync::Mutex<Throttle>>,
    /// Preview links already opened (nonce → expiry), shared by every clone.
    used_links: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
}

#[derive(Debug, Default)]
struct Throttle {
    failures: u32,
    blocked_until: Option<std::time::Instant>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("enabled", &self.enabled())
            .finish()
    }
}

impl Auth {
    pub fn new(token: Option<String>) -> Result<Self, AuthError> {
        let token = token.filter(|token| !token.trim().is_empty());
        if token
            .as_ref()
            .is_some_and(|token| token.chars().count() < MIN_TOKEN_CHARS)
        {
            return Err(AuthError::TokenTooShort);
        }
        Ok(Self {
            token,
            throttle: Default::default(),
            used_links: Default::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Refuses to serve on an address other machines can reach without a token.
    pub fn check_exposure(&self, what: &'static str, address: SocketAddr) -> Result<(), AuthError> {
        if self.enabled() || address.ip().is_loopback() {
            return Ok(());
        }
        Err(AuthError::TokenRequired { what, address })
    }

    /// Whether `offered` is the token (constant time).
    pub fn is_token(&self, offered: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|token| bool::from(token.as_bytes().ct_eq(offered.as_bytes())))
    }

    /// A new UI session cookie value, valid while the session `generation` lasts (signing
    /// out starts a new one on the server, which ends every earlier session).
    pub fn new_session(&self, generation: u64) -> String {
        self.signed(&format!("session:{generation}"), SESSION_LIFETIME)
    }

    pub fn is_session(&self, value: &str, generation: u64) -> bool {
        self.verify(&format!("session:{generation}"), value)
    }

    /// Whether a sign-in may be tried now; `Err` holds how long to wait. After
    /// [`FREE_SIGN_IN_FAILURES`] wrong tokens in a row, each further try waits twice as long
    /// as the last (at most a minute), so guessing the token from the sign-in form is slow.
    pub fn sign_in_allowed(&self) -> Result<(), Duration> {
        let throttle = self.lock_throttle();
        match throttle.blocked_until {
            Some(until) if until > std::time::Instant::now() => {
                Err(until - std::time::Instant::now())
            }
            _ => Ok(()),
        }
    }

    /// Counts a sign-in's outcome for the back-off.
    pub fn sign_in_outcome(&self, succeeded: bool) {
        let mut throttle = self.lock_throttle();
        if succeeded {
            *throttle = Throttle::default();
            return;
        }
        throttle.failures += 1;
        if throttle.failures >= FREE_SIGN_IN_FAILURES {
            let doublings = (throttle.failures - FREE_SIGN_IN_FAILURES).min(6);
            let wait = Duration::from_secs(1 << doublings).min(Duration::from_secs(60));
            throttle.blocked_until = Some(std::time::Instant::now() + wait);
        }
    }

    fn lock_throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The query string of a signed link that opens `project`'s preview once:
    /// `grant=<expiry>.<nonce>.<signature>`.
    pub fn preview_link_query(&self, project: Uuid) -> String {
        let nonce = hex::encode(rand::random::<[u8; 12]>());
        let value = self.signed(
            &format!("preview-link:{project}:{nonce}"),
            PREVIEW_LINK_LIFETIME,
        );
        let (expires, signature) = value.split_once('.').unwrap_or_default();
        format!("grant={expires}.{nonce}.{signature}")
    }

    /// Whether `grant` is a valid link to `project`'s preview that was never used before;
    /// it counts as used from now on. A link that leaked (a log, a shared screen, the
    /// browser's history) opens nothing after its first use.
    pub fn redeem_preview_link(&self, project: Uuid, grant: &str) -> bool {
        let mut parts = grant.splitn(3, '.');
        let (Some(expires), Some(nonce), Some(signature)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        if !self.verify(
            &format!("preview-link:{project}:{nonce}"),
            &format!("{expires}.{signature}"),
        ) {
            return false;
        }
        let now = Utc::now().timestamp();
        let mut used = self
            .used_links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Expired links are refused by their signature already: forget them.
        used.retain(|_, expiry| *expiry >= now);
        let expiry = expires.parse().unwrap_or(now);
        used.insert(nonce.to_string(), expiry).is_none()
    }

    /// The cookie value a preview host keeps after a signed link was opened.
    pub fn new_preview_session(&self, project: Uuid) -> String {
        self.signed(
            &format!("preview-session:{project}"),
            PREVIEW_SESSION_LIFETIME,
        )
    }

    pub fn is_preview_session(&self, project: Uuid, value: &str) -> bool {
        self.verify(&format!("preview-session:{project}"), value)
    }

    /// `<expiry>.<hex signature of purpose and expiry>`.
    fn signed(&self, purpose: &str, lifetime: Duration) -> String {
        let expires = Utc::now().timestamp() + lifetime.as_secs() as i64;
        format!(
            "{expires}.{}",
            hex::encode(self.signature(purpose, expires))
        )
    }

    fn verify(&self, purpose: &str, value: &str) -> bool {
        let Some((expires, signature)) = value.split_once('.') else {
            return false;
        };
        let (Ok(expires), Ok(signature)) = (expires.parse::<i64>(), hex::decode(signature)) else {
            return false;
        };
        if expires < Utc::now().timestamp() || !self.enabled() {
            return false;
        }
        let expected = self.signature(purpose, expires);
        bool::from(expected.as_slice().ct_eq(&signature))
    }

    fn signature(&self, purpose: &str, expires: i64) -> Vec<u8> {
        let key = self.token.as_deref().unwrap_or_default();
        let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
        mac.update(format!("{purpose}:{expires}").as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// Whether the request reached a TLS-terminating proxy first (cookies are `Secure` then).
pub fn behind_tls(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(Some("a-long-enough-test-token".into())).unwrap()
    }

    #[test]
    fn sessions_and_links_verify_only_with_the_same_token_and_purpose() {
        let auth = auth();
        let session = auth.new_session(3);
        assert!(auth.is_session(&session, 3));
        assert!(!auth.is_session(&session, 4), "a later generation ends it");
        let other = Auth::new(Some("another-long-enough-token".into())).unwrap();
        assert!(!other.is_session(&session, 3));
        let project = Uuid::now_v7();
        let grant = auth.preview_link_query(project);
        let grant = grant.strip_prefix("grant=").unwrap();
        assert!(
            !auth.redeem_preview_link(Uuid::now_v7(), grant),
            "bound to its project"
        );
        assert!(auth.redeem_preview_link(project, grant));
        assert!(
            !auth.clone().redeem_preview_link(project, grant),
            "usable once"
        );
        let second = auth.preview_link_query(project);
        assert_ne!(
            second.as_str(),
            format!("grant={grant}"),
            "every link is new"
        );
        assert!(auth.redeem_preview_link(project, second.strip_prefix("grant=").unwrap()));
        assert!(!auth.is_session(grant, 0), "bound to its purpose");
        assert!(!auth.is_session("garbage", 0));
        assert!(!auth.is_session("1.00", 0));
    }

    #[test]
    fn expired_values_are_refused() {
        let auth = auth();
        let expired = format!("100.{}", hex::encode(auth.signature("session:0", 100)));
        assert!(!auth.is_session(&expired, 0));
    }

    #[test]
    fn exposure_needs_a_token_and_tokens_must_be_long() {
        let open = Auth::new(None).unwrap();
        assert!(
            open.check_exposure("UI", "127.0.0.1:3000".parse().unwrap())
                .is_ok()
        );
        assert!(
            open.check_exposure("UI", "[::1]:3000".parse().unwrap())
                .is_ok()
        );
        let refused = open
            .check_exposure("UI", "0.0.0.0:3000".parse().unwrap())
            .unwrap_err();
        assert!(refused.to_string().contains("CODEFLUX_AUTH_TOKEN"));
        assert!(
            auth()
                .check_exposure("UI", "0.0.0.0:3000".parse().unwrap())
                .is_ok()
        );
        assert!(matches!(
            Auth::new(Some("short".into())),
            Err(AuthError::TokenTooShort)
        ));
        assert!(auth().is_token("a-long-enough-test-token"));
        assert!(!auth().is_token("a-long-enough-test-tokem"));
        assert!(!open.is_token(""));
    }

    #[test]
    fn wrong_tokens_in_a_row_make_sign_ins_wait_longer_each_time() {
        let auth = auth();
        for _ in 0..FREE_SIGN_IN_FAILURES - 1 {
            auth.sign_in_outcome(false);
            assert!(auth.sign_in_allowed().is_ok());
        }
        auth.sign_in_outcome(false);
        let first = auth.sign_in_allowed().unwrap_err();
        assert!(first <= Duration::from_secs(1) && first > Duration::ZERO);
        auth.clone().sign_in_outcome(false);
        let second = auth.sign_in_allowed().unwrap_err();
        assert!(
            second > Duration::from_secs(1),
            "clones share it; {second:?}"
        );
        for _ in 0..20 {
            auth.sign_in_outcome(false);
        }
        assert!(auth.sign_in_allowed().unwrap_err() <= Duration::from_secs(60));
        auth.sign_in_outcome(true);
        assert!(auth.sign_in_allowed().is_ok(), "a right token resets it");
    }

    #[test]
    fn cookies_are_found_by_name() {
        assert_eq!(
            cookie("a=1; codeflux_session=x.y; b=2", SESSION_COOKIE),
            Some("x.y")
        );
        assert_eq!(cookie("a=1", SESSION_COOKIE), None);
    }
}
