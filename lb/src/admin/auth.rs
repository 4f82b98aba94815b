//! Who may change the running balancer through the admin API.
//!
//! Write actions (POST drain/enable/weight) need `Authorization: Bearer TOKEN` whenever a
//! token is configured: `admin_token_file` (a file no other user can read), else the
//! environment variable [`TOKEN_ENV`]. An `admin_listen` that is not loopback without a
//! token is a configuration error: anyone on the network could drain every edge. On loopback
//! without a token, writes stay open to local users (as before). Reads never need the token.
//!
//! This room reads the token source and compares tokens (in constant time); it does not touch
//! HTTP — `super::server` asks it.

use crate::config::LbConfig;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The environment variable that may hold the token (when `admin_token_file` is unset).
pub const TOKEN_ENV: &str = "EDGEFLEET_LB_ADMIN_TOKEN";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("admin_listen = \"{0}\" is not a loopback address and no admin token is configured: set admin_token_file (a file only lb's user can read) or {TOKEN_ENV}, or listen on 127.0.0.1")]
    NoToken(std::net::SocketAddr),
    #[error("admin_token_file {}: {1}", .0.display())]
    Unreadable(PathBuf, String),
    #[error("admin_token_file {}: mode {1:04o} lets other users access the token: chmod 600 (or 640 with lb's group)", .0.display())]
    WorldAccessible(PathBuf, u32),
    #[error("admin_token_file {}: the file is empty", .0.display())]
    Empty(PathBuf),
}

/// A bearer token. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(<{} bytes>)", self.0.len())
    }
}

impl Token {
    /// A token from text (surrounding whitespace, such as a file's newline, is dropped);
    /// `None` when nothing is left.
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty()).then(|| Token(t.as_bytes().to_vec()))
    }

    /// Compares in constant time (for tokens of the same length; the length may leak).
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_slice().ct_eq(presented).into()
    }

    /// The `Authorization` header value a client sends.
    pub fn header_value(&self) -> String {
        format!("Bearer {}", String::from_utf8_lossy(&self.0))
    }
}

/// Where the running token came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Env,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "admin_token_file {}", p.display()),
            Source::Env => f.write_str(TOKEN_ENV),
        }
    }
}

/// Reads a token file, refusing one that other users may read or write.
pub fn read_token_file(path: &Path) -> Result<Token, AuthError> {
    let unreadable = |e: std::io::Error| AuthError::Unreadable(path.to_path_buf(), e.to_string());
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(AuthError::WorldAccessible(path.to_path_buf(), mode));
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    Token::new(&text).ok_or_else(|| AuthError::Empty(path.to_path_buf()))
}

/// The token `config` asks for, with the process environment for [`TOKEN_ENV`].
pub fn load(config: &LbConfig) -> Result<Option<(Token, Source)>, AuthError> {
    load_with(config, std::env::var(TOKEN_ENV).ok().as_deref())
}

/// [`load`] with the environment variable's value given (tests).
pub fn load_with(
    config: &LbConfig,
    env: Option<&str>,
) -> Result<Option<(Token, Source)>, AuthError> {
    let found = match (&config.admin_token_file, env.and_then(Token::new)) {
        (Some(path), _) => Some((read_token_file(path)?, Source::File(path.clone()))),
        (None, Some(t)) => Some((t, Source::Env)),
        (None, None) => None,
    };
    if found.is_none() && !config.admin_listen.ip().is_loopback() {
        return Err(AuthError::NoToken(config.admin_listen));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(admin: &str, file: Option<&Path>) -> LbConfig {
        let mut t = format!("admin_listen = \"{admin}\"\n");
        if let Some(f) = file {
            t.push_str(&format!("admin_token_file = \"{}\"\n", f.display()));
        }
        t.push_str("[[virtual_server]]\naddress = \"127.0.0.1:1935\"\n[[virtual_server.real_server]]\naddress = \"127.0.0.1:1936\"\n");
        LbConfig::parse(&t).unwrap()
    }

    #[test]
    fn non_loopback_needs_a_token_loopback_does_not() {
        assert_eq!(load_with(&cfg("127.0.0.1:9180", None), None), Ok(None));
        assert_eq!(load_with(&cfg("[::1]:9180", None), None), Ok(None));
        let open = cfg("0.0.0.0:9180", None);
        let e = load_with(&open, None).unwrap_err();
        assert_eq!(e, AuthError::NoToken("0.0.0.0:9180".parse().unwrap()));
        assert!(
            e.to_string().contains("admin_listen = \"0.0.0.0:9180\""),
            "{e}"
        );
        assert_eq!(
            load_with(&open, Some("  ")).unwrap_err(),
            e,
            "a blank env is no token"
        );
        let (t, src) = load_with(&open, Some("s3cret\n")).unwrap().unwrap();
        assert_eq!(src, Source::Env);
        assert!(t.matches(b"s3cret"));
        assert!(!t.matches(b"s3cre"));
        assert!(!t.matches(b"s3cret!"));
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn token_file_must_not_be_accessible_to_others() {
        let dir = std::env::temp_dir().join(format!("edgefleet-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("lb.token");
        std::fs::write(&f, "from-file\n").unwrap();
        let set = |m: u32| std::fs::set_permissions(&f, std::fs::Permissions::from_mode(m));
        set(0o644).unwrap();
        let c = cfg("0.0.0.0:9180", Some(&f));
        let e = load_with(&c, Some("from-env")).unwrap_err();
        assert_eq!(e, AuthError::WorldAccessible(f.clone(), 0o644));
        assert!(e.to_string().contains("mode 0644"), "{e}");
        set(0o600).unwrap();
        let (t, src) = load_with(&c, Some("from-env")).unwrap().unwrap();
        assert_eq!(src, Source::File(f.clone()), "the file wins over the env");
        assert!(t.matches(b"from-file"));
        std::fs::write(&f, "\n").unwrap();
        assert_eq!(
            load_with(&c, None).unwrap_err(),
            AuthError::Empty(f.clone())
        );
        let missing = dir.join("missing.token");
        assert!(matches!(
            load_with(&cfg("127.0.0.1:9180", Some(&missing)), None),
            Err(AuthError::Unreadable(..))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
