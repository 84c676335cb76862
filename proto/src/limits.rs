//! Field limits checked at the edge: a name, a batch or an id beyond them is refused with a
//! reason before it reaches any state, so no single client's input can grow memory, logs or
//! the journal without bound.

/// Longest broker or executor name, in bytes.
pub const MAX_NAME: usize = 32;
/// Most commands in one submit frame from a client.
pub const MAX_BATCH: usize = 4096;
/// Largest frame a logged-in client (broker, gateway, monitor) may send.
pub const CLIENT_MAX_FRAME: usize = 1024 * 1024;
/// Most names in one `DeclareBrokers`.
pub const MAX_DECLARED: usize = 4096;
/// Most ids in one `QueryOrders`.
pub const MAX_QUERY_IDS: usize = 65_536;
/// A broker session's order ids are its own namespace: `1..=MAX_BROKER_ORDER_ID`.
pub const MAX_BROKER_ORDER_ID: u64 = (1 << 40) - 1;

/// Why a name is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name of {0} bytes is longer than {MAX_NAME}")]
    TooLong(usize),
    #[error("name {0:?} may only contain ASCII letters, digits, '_', '-' and '.'")]
    BadCharacter(String),
}

/// Broker and executor names: 1 to [`MAX_NAME`] bytes of `[A-Za-z0-9_.-]`, so they are safe in
/// logs, CSV files and FIX CompIDs as they are.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong(name.len()));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(NameError::BadCharacter(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_plain() {
        assert!(check_name("B01").is_ok());
        assert!(check_name("exec-a.host_1").is_ok());
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name(&"x".repeat(33)), Err(NameError::TooLong(33)));
        for bad in ["a,b", "a\"b", "a b", "ä", "a\nb"] {
            assert!(
                matches!(check_name(bad), Err(NameError::BadCharacter(_))),
                "{bad}"
            );
        }
    }
}
