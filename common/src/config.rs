//! Config error reporting shared by `edge --check` and `lb --check`, and the address forms
//! both configs accept.
//!
//! A validator collects every problem it finds instead of stopping at the first, so an
//! operator fixes a config in one pass: each [`ConfigError`] prints as `key.path: why`.

use std::fmt;
use std::net::SocketAddr;

/// One problem in a config file, located by its key path (`publish.allow[1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub why: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, why: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            why: why.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.why)
        } else {
            write!(f, "{}: {}", self.key, self.why)
        }
    }
}

/// All the problems of one config, printed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and parses a TOML config file into `T` (serde, `deny_unknown_fields` expected).
/// Syntax errors, type mismatches and unknown keys come back as one located error.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, ConfigErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            "",
            format!("cannot read {}: {e}", path.display()),
        )])
    })?;
    parse_toml(&source)
}

/// Syntax errors found at most in one pass of [`parse_table`].
const MAX_SYNTAX_ERRORS: usize = 20;

/// Parses TOML into a table, reporting **every** syntax error at once: the TOML reader stops
/// at its first, so the line it names is blanked and the rest read again (line numbers stay
/// the file's), up to [`MAX_SYNTAX_ERRORS`]. An error that follows from an earlier one (a
/// multi-line value cut in two) may show too; each names its line.
pub fn parse_table(source: &str) -> Result<toml::Table, ConfigErrors> {
    let mut lines: Vec<&str> = source.split('\n').collect();
    let mut errs: Vec<ConfigError> = Vec::new();
    loop {
        let text = lines.join("\n");
        let e = match text.parse::<toml::Table>() {
            Ok(t) if errs.is_empty() => return Ok(t),
            Ok(_) => return Err(ConfigErrors(errs)),
            Err(e) => e,
        };
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let why = e.message().trim().replace('\n', " ");
        let key = line.map(|l| format!("line {l}")).unwrap_or_default();
        let repeated = errs
            .last()
            .is_some_and(|last| last.key == key && !key.is_empty());
        if !repeated {
            errs.push(ConfigError::new(key, why));
        }
        match line {
            // Blank the line and read on; stop where blanking cannot help.
            Some(l) if !repeated && errs.len() < MAX_SYNTAX_ERRORS && l <= lines.len() => {
                lines[l - 1] = "";
            }
            _ => return Err(ConfigErrors(errs)),
        }
    }
}

/// [`load_toml`] on a string.
pub fn parse_toml<T: serde::de::DeserializeOwned>(source: &str) -> Result<T, ConfigErrors> {
    toml::from_str(source).map_err(|e| {
        let line = e
            .span()
            .map(|s| source[..s.start.min(source.len())].lines().count().max(1));
        let why = e.message().trim().replace('\n', " ");
        let key = line.map(|l| format!("line {l}")).unwrap_or_default();
        ConfigErrors(vec![ConfigError::new(key, why)])
    })
}

/// Parses "ADDR:PORT" (an IP address, or `localhost`); names are not resolved through DNS
/// at config time, apart from `localhost`.
pub fn parse_socket_addr(value: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = value.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = value.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{value:?} has an invalid port {port:?}"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(port) = value.parse::<u16>() {
        // SRS's habit: `listen 1935;` means every address.
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if !value.contains(':') {
        return Err(format!("{value:?} needs a port, as in \"{value}:1935\""));
    }
    Err(format!("{value:?} is not an IP:PORT address"))
}

/// Parses "HOST:PORT" where HOST may be a name resolved when used (an upstream origin);
/// a bare HOST gets RTMP's port 1935.
pub fn parse_host_port(value: &str) -> Result<(String, u16), String> {
    let bracketed_v6 = value.starts_with('[') && value.ends_with(']');
    let bare_v6 = value.matches(':').count() > 1 && !value.contains(']');
    if !value.contains(':') || bracketed_v6 || bare_v6 {
        let host = value.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{value:?} has no host"));
        }
        return Ok((host.to_string(), 1935));
    }
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("{value:?} needs a port, as in \"{value}:1935\""))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{value:?} has an invalid port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{value:?} has no host"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_syntax_error_at_once() {
        let e = parse_table("a = 1\nb = \nc = 3\n[d\ne = \"x\"\nf = = 2\n").unwrap_err();
        let lines: Vec<&str> = e.0.iter().map(|x| x.key.as_str()).collect();
        assert_eq!(lines, ["line 2", "line 4", "line 6"], "{e}");
        assert!(parse_table("a = 1\n[t]\nb = 2\n").is_ok());
        // Nothing to blank past the end: one error, no loop.
        assert_eq!(parse_table("a = \"unterminated").unwrap_err().0.len(), 1);
    }

    #[test]
    fn socket_addrs() {
        assert!(parse_socket_addr("127.0.0.1:1935").is_ok());
        assert!(parse_socket_addr("[::1]:1935").is_ok());
        assert!(parse_socket_addr("localhost:80").is_ok());
        assert!(parse_socket_addr("1.2.3.4")
            .unwrap_err()
            .contains("needs a port"));
        assert_eq!(
            parse_socket_addr("1935").unwrap(),
            "0.0.0.0:1935".parse().unwrap()
        );
        assert!(parse_socket_addr("nonsense:x").is_err());
        assert_eq!(
            parse_host_port("origin.example:1935").unwrap(),
            ("origin.example".to_string(), 1935)
        );
        assert_eq!(
            parse_host_port("origin").unwrap(),
            ("origin".to_string(), 1935)
        );
        assert_eq!(parse_host_port("[::1]").unwrap(), ("::1".to_string(), 1935));
        assert_eq!(
            parse_host_port("[::1]:1936").unwrap(),
            ("::1".to_string(), 1936)
        );
        assert!(parse_host_port(":1935").is_err());
    }
}
