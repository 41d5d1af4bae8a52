//! ListSessions page tokens: opaque to clients, hex of
//! `v1:<created ms>:<id>`, the position the next page starts after; and
//! the page sizes of every List call.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::{Error, Result};
use super::session::{Session, SessionId};

/// A List call's page size when the caller gives none, and the most it gets.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Where a ListSessions page ends; the next page starts strictly after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: SystemTime,
    pub id: SessionId,
}

pub fn cursor_of(session: &Session) -> Cursor {
    Cursor {
        created_at: session.created_at,
        id: session.id,
    }
}

pub fn encode(cursor: Cursor) -> String {
    let ms = cursor
        .created_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    opaque(&format!("v1:{ms}:{}", cursor.id))
}

/// A page token's text as the client sees it: hex, so it is opaque and
/// safe in any transport.
pub(crate) fn opaque(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The text of a token made by [`opaque`]; `None` for anything else.
pub(crate) fn unopaque(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// `None` for the first page (an empty token).
pub fn decode(token: &str) -> Result<Option<Cursor>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token", "not a token this server issued");
    let text = unopaque(token).ok_or_else(invalid)?;
    let mut parts = text.splitn(3, ':');
    let (Some("v1"), Some(ms), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let ms: u64 = ms.parse().map_err(|_| invalid())?;
    let id = SessionId::parse(id).ok_or_else(invalid)?;
    Ok(Some(Cursor {
        created_at: UNIX_EPOCH + Duration::from_millis(ms),
        id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_what_they_did_not_issue() {
        let cursor = Cursor {
            created_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            id: SessionId::new(),
        };
        let token = encode(cursor);
        assert_eq!(decode(&token).unwrap(), Some(cursor));
        assert_eq!(decode("").unwrap(), None);
        for bad in ["zz", "abc", "76313a", &token[..token.len() - 2]] {
            assert!(
                matches!(decode(bad), Err(Error::InvalidArgument { .. })),
                "{bad} must be refused"
            );
        }
    }
}
