//! The broker credentials file: `broker,secret` per line, header optional, `#` comments.
//! Read by the manager (to check) and by user-sim (to log in).

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{origin}:{line}: {problem}")]
    Line {
        origin: String,
        line: usize,
        problem: String,
    },
    #[error("{0}: no broker credentials")]
    Empty(String),
}

/// Parses the file's text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<BTreeMap<String, String>, CredentialsError> {
    let err = |n: usize, problem: String| CredentialsError::Line {
        origin: origin.to_string(),
        line: n + 1,
        problem,
    };
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && line == "broker,secret") {
            continue;
        }
        let Some((name, secret)) = line.split_once(',') else {
            return Err(err(n, "expected `broker,secret`".into()));
        };
        let (name, secret) = (name.trim(), secret.trim());
        if secret.is_empty() {
            return Err(err(n, "the secret must not be empty".into()));
        }
        if let Err(e) = proto::limits::check_name(name) {
            return Err(err(n, format!("broker name: {e}")));
        }
        if out.insert(name.to_string(), secret.to_string()).is_some() {
            return Err(err(n, format!("broker {name} listed twice")));
        }
    }
    if out.is_empty() {
        return Err(CredentialsError::Empty(origin.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse as parse_credentials;

    #[test]
    fn credentials_parse_and_errors_name_the_line() {
        let c = parse_credentials("broker,secret\nB01,abc\nB02, def \n", "f").unwrap();
        assert_eq!(c["B02"], "def");
        let e = parse_credentials("B01,abc\nB02\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f:2"), "{e}");
        assert!(parse_credentials("B01,a\nB01,b\n", "f").is_err());
        assert!(parse_credentials("", "f").is_err());
    }
}
