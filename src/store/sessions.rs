//! Sign-in sessions end together: each is signed under the current generation, and
//! signing out starts the next one.

use super::{Store, StoreResult};

/// Key (in the default tree) of the sign-in session generation.
const SESSION_GENERATION: &[u8] = b"session_generation";

impl Store {
    /// The generation of sign-in sessions: a session made under an older one is over.
    pub fn session_generation(&self) -> StoreResult<u64> {
        Ok(self
            .db
            .get(SESSION_GENERATION)?
            .and_then(|bytes| bytes.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Ends every session signed so far (sign-out); durable before it returns.
    pub async fn end_sessions(&self) -> StoreResult<u64> {
        let next = self
            .db
            .update_and_fetch(SESSION_GENERATION, |old| {
                let current = old
                    .and_then(|bytes| bytes.try_into().ok())
                    .map_or(0, u64::from_be_bytes);
                Some((current + 1).to_be_bytes().to_vec())
            })?
            .and_then(|bytes| bytes.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes);
        self.flush().await?;
        Ok(next)
    }
}
