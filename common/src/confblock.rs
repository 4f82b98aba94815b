//! The block syntax keepalived.conf and srs.conf share (nginx's): `name args { ... }`,
//! comments from `!` or `#` to the end of the line, `"quoted strings"`, and
//! `include PATTERN` resolved relative to the including file. Read by the importers
//! (`lb import-keepalived`, `edge import-srs`); this room only turns bytes into a tree of
//! [`Directive`]s and knows nothing of either program's keywords.
//!
//! Two dialects: keepalived ends a directive at the end of its line ([`Dialect::Keepalived`]),
//! SRS ends one with `;` ([`Dialect::Nginx`]). Every problem is one [`BlockError`] naming
//! `file:line`; no input makes it panic: nesting and includes are bounded ([`MAX_DEPTH`],
//! [`MAX_FILES`]) and an include loop is an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Blocks nested deeper than this are refused (a real config nests 4 or 5 deep).
pub const MAX_DEPTH: usize = 32;
/// At most this many files (the top one and its includes, however nested).
pub const MAX_FILES: usize = 256;
/// Files larger than this are refused (16 MiB: far above any real config).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A directive ends at the end of its line (keepalived.conf).
    Keepalived,
    /// A directive ends with `;` (srs.conf, nginx.conf).
    Nginx,
}

/// Where a directive or a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// `name args...` with its `{ ... }` block, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Directive>>,
    pub pos: Pos,
}

impl Directive {
    /// `name args...` as written (quotes dropped), for messages and comments.
    pub fn text(&self) -> String {
        let mut s = self.name.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// The children of the block (none without one).
    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// One problem, at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {why}")]
pub struct BlockError {
    pub pos: Pos,
    pub why: String,
}

fn err(pos: &Pos, why: impl Into<String>) -> BlockError {
    BlockError {
        pos: pos.clone(),
        why: why.into(),
    }
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Semi,
    Newline,
}

/// The length of a Unicode space at the start of `b` that pasted configs carry between a key
/// and its value (U+00A0 no-break space, U+3000 ideographic space), else 0.
fn unicode_space(b: &[u8]) -> usize {
    match b {
        [0xc2, 0xa0, ..] => 2,
        [0xe3, 0x80, 0x80, ..] => 3,
        _ => 0,
    }
}

/// Splits `src` into tokens with their line, one error per bad token (reading goes on).
fn tokenize(src: &[u8], file: &Arc<str>, errs: &mut Vec<BlockError>) -> Vec<(Tok, usize)> {
    let mut toks = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let pos = |line| Pos {
        file: file.clone(),
        line,
    };
    let word = |bytes: Vec<u8>, line: usize, errs: &mut Vec<BlockError>| -> Option<Tok> {
        match String::from_utf8(bytes) {
            Ok(s) => Some(Tok::Word(s)),
            Err(_) => {
                errs.push(err(&pos(line), "is not UTF-8 text"));
                None
            }
        }
    };
    while i < src.len() {
        let c = src[i];
        let sp = unicode_space(&src[i..]);
        if sp > 0 {
            i += sp;
            continue;
        }
        match c {
            b'\n' => {
                toks.push((Tok::Newline, line));
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' | b'!' => {
                while i < src.len() && src[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                toks.push((Tok::Open, line));
                i += 1;
            }
            b'}' => {
                toks.push((Tok::Close, line));
                i += 1;
            }
            b';' => {
                toks.push((Tok::Semi, line));
                i += 1;
            }
            b'"' | b'\'' => {
                let start = line;
                let mut buf = Vec::new();
                i += 1;
                let mut closed = false;
                while i < src.len() {
                    match src[i] {
                        q if q == c => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        b'\\' if i + 1 < src.len() && (src[i + 1] == c || src[i + 1] == b'\\') => {
                            buf.push(src[i + 1]);
                            i += 2;
                        }
                        b'\n' => break,
                        b => {
                            buf.push(b);
                            i += 1;
                        }
                    }
                }
                if !closed {
                    errs.push(err(&pos(start), "unterminated quoted string"));
                } else if let Some(t) = word(buf, start, errs) {
                    toks.push((t, start));
                }
            }
            c if c < 0x20 || c == 0x7f => {
                errs.push(err(
                    &pos(line),
                    format!("control byte 0x{c:02x}: this is not a text config"),
                ));
                // One error per line is enough for binary garbage.
                while i < src.len() && src[i] != b'\n' {
                    i += 1;
                }
            }
            _ => {
                let mut buf = Vec::new();
                while i < src.len() {
                    let b = src[i];
                    if matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'{' | b'}' | b';' | b'"')
                        || b < 0x20
                        || b == 0x7f
                        || unicode_space(&src[i..]) > 0
                    {
                        break;
                    }
                    buf.push(b);
                    i += 1;
                }
                if let Some(t) = word(buf, line, errs) {
                    toks.push((t, line));
                }
            }
        }
    }
    toks
}

/// Parses one file's text (its `include`s stay as directives: see [`load`]).
pub fn parse(src: &[u8], file: &str, dialect: Dialect) -> Result<Vec<Directive>, Vec<BlockError>> {
    let file: Arc<str> = Arc::from(file);
    let mut errs = Vec::new();
    let toks = tokenize(src, &file, &mut errs);
    let pos = |line| Pos {
        file: file.clone(),
        line,
    };
    // A stack of open blocks: (the directive that opened it, its children so far).
    let mut stack: Vec<(Option<Directive>, Vec<Directive>)> = vec![(None, Vec::new())];
    let mut pending: Option<Directive> = None;
    let mut last_line = 1;
    // keepalived: the directive that just ended with its line, which a `{` on the next
    // line may still open.
    let mut just_ended = false;
    for (tok, line) in toks {
        last_line = line;
        match tok {
            Tok::Word(w) => {
                just_ended = false;
                match &mut pending {
                    Some(d) => d.args.push(w),
                    None => {
                        pending = Some(Directive {
                            name: w,
                            args: Vec::new(),
                            block: None,
                            pos: pos(line),
                        })
                    }
                }
            }
            Tok::Newline => {
                if dialect == Dialect::Keepalived {
                    if let Some(d) = pending.take() {
                        stack.last_mut().expect("root").1.push(d);
                        just_ended = true;
                    }
                }
            }
            Tok::Semi => {
                just_ended = false;
                match pending.take() {
                    Some(d) if dialect == Dialect::Nginx => {
                        stack.last_mut().expect("root").1.push(d)
                    }
                    Some(mut d) => {
                        // keepalived has no `;`: keep it as text.
                        d.args.push(";".into());
                        pending = Some(d);
                    }
                    None if dialect == Dialect::Nginx => {
                        errs.push(err(&pos(line), "`;` without a directive"))
                    }
                    None => {}
                }
            }
            Tok::Open => {
                let opener = match pending.take() {
                    Some(d) => Some(d),
                    None if just_ended => stack.last_mut().expect("root").1.pop(),
                    None => None,
                };
                just_ended = false;
                match opener {
                    None => errs.push(err(&pos(line), "`{` without a name before it")),
                    Some(_) if stack.len() > MAX_DEPTH => {
                        errs.push(err(
                            &pos(line),
                            format!("blocks nested deeper than {MAX_DEPTH}"),
                        ));
                        return Err(errs);
                    }
                    Some(d) => stack.push((Some(d), Vec::new())),
                }
            }
            Tok::Close => {
                just_ended = false;
                if let Some(d) = pending.take() {
                    if dialect == Dialect::Nginx {
                        errs.push(err(&d.pos, format!("`{}` is not ended by `;`", d.text())));
                    }
                    stack.last_mut().expect("root").1.push(d);
                }
                if stack.len() == 1 {
                    errs.push(err(&pos(line), "`}` closes no block"));
                    continue;
                }
                let (opener, children) = stack.pop().expect("not root");
                if let Some(mut d) = opener {
                    d.block = Some(children);
                    stack.last_mut().expect("root").1.push(d);
                }
            }
        }
    }
    if let Some(d) = pending.take() {
        if dialect == Dialect::Nginx {
            errs.push(err(&d.pos, format!("`{}` is not ended by `;`", d.text())));
        }
        stack.last_mut().expect("root").1.push(d);
    }
    while stack.len() > 1 {
        let (opener, _) = stack.pop().expect("not root");
        let p = opener.map(|d| d.pos).unwrap_or_else(|| pos(last_line));
        errs.push(err(&p, "this block is not closed (a `}` is missing)"));
    }
    if errs.is_empty() {
        Ok(stack.pop().expect("root").1)
    } else {
        Err(errs)
    }
}

/// Reads `path` and every file it includes (`include PATTERN`, relative to the including
/// file, `*` `?` `[...]` in the file name), spliced where the `include` stands.
pub fn load(path: &Path, dialect: Dialect) -> Result<Vec<Directive>, Vec<BlockError>> {
    let mut files = 0;
    let mut chain = Vec::new();
    let top = Pos {
        file: Arc::from(path.display().to_string()),
        line: 0,
    };
    load_file(path, dialect, &top, &mut chain, &mut files)
}

fn load_file(
    path: &Path,
    dialect: Dialect,
    from: &Pos,
    chain: &mut Vec<PathBuf>,
    files: &mut usize,
) -> Result<Vec<Directive>, Vec<BlockError>> {
    let name = path.display().to_string();
    let at = |why: String| {
        let mut p = from.clone();
        if p.line == 0 {
            p.file = Arc::from(name.as_str());
        }
        vec![err(&p, why)]
    };
    *files += 1;
    if *files > MAX_FILES {
        return Err(at(format!("more than {MAX_FILES} files included")));
    }
    let canon = std::fs::canonicalize(path).map_err(|e| at(format!("cannot read {name}: {e}")))?;
    if chain.contains(&canon) {
        return Err(at(format!("include loop: {name} includes itself")));
    }
    let meta = std::fs::metadata(&canon).map_err(|e| at(format!("cannot read {name}: {e}")))?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(at(format!(
            "{name} is not a regular file of at most {MAX_FILE_BYTES} bytes"
        )));
    }
    let src = std::fs::read(&canon).map_err(|e| at(format!("cannot read {name}: {e}")))?;
    let tree = parse(&src, &name, dialect)?;
    chain.push(canon);
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let out = expand(tree, &dir, dialect, chain, files);
    chain.pop();
    out
}

fn expand(
    tree: Vec<Directive>,
    dir: &Path,
    dialect: Dialect,
    chain: &mut Vec<PathBuf>,
    files: &mut usize,
) -> Result<Vec<Directive>, Vec<BlockError>> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for mut d in tree {
        if d.name == "include" && d.block.is_none() {
            if d.args.len() != 1 {
                errs.push(err(&d.pos, "include takes one file name or pattern"));
                continue;
            }
            match resolve(dir, &d.args[0]) {
                Ok(paths) => {
                    for p in paths {
                        match load_file(&p, dialect, &d.pos, chain, files) {
                            Ok(mut v) => out.append(&mut v),
                            Err(mut e) => errs.append(&mut e),
                        }
                    }
                }
                Err(why) => errs.push(err(&d.pos, why)),
            }
            continue;
        }
        if let Some(children) = d.block.take() {
            match expand(children, dir, dialect, chain, files) {
                Ok(c) => d.block = Some(c),
                Err(mut e) => errs.append(&mut e),
            }
        }
        out.push(d);
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// The files an include names, sorted (glob(3) order). A pattern may use wildcards in its
/// last component only; one that matches nothing includes nothing, as in keepalived.
fn resolve(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = dir.join(pattern);
    let file = full
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = full.parent().unwrap_or(Path::new("."));
    if !file.contains(['*', '?', '[']) {
        return Ok(vec![full]);
    }
    if parent.to_string_lossy().contains(['*', '?', '[']) {
        return Err(format!(
            "{pattern}: wildcards are supported in the file name only"
        ));
    }
    let entries = std::fs::read_dir(parent).map_err(|e| format!("{pattern}: {e}"))?;
    let pat: Vec<char> = file.chars().collect();
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n: Vec<char> = e.file_name().to_string_lossy().chars().collect();
            !(n.first() == Some(&'.') && pat.first() != Some(&'.')) && glob_match(&pat, &n)
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

/// `*`, `?` and `[abc]` / `[a-z]` / `[!a]` matching of a whole name (iterative: no
/// recursion to exhaust, quadratic at worst).
fn glob_match(pat: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() {
            match pat[p] {
                '*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, len)) = class(&pat[p..], name[n]) {
                        if ok {
                            p += len;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == '[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|c| *c == '*')
}

/// A `[...]` class at the start of `pat`: whether `c` is in it and the class's length, or
/// None when the `[` is not closed (then it is a literal).
fn class(pat: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(1), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if i + 2 < pat.len() && pat[i + 1] == '-' && pat[i + 2] != ']' {
            if pat[i] <= c && c <= pat[i + 2] {
                hit = true;
            }
            i += 3;
        } else {
            if pat[i] == c {
                hit = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ka(s: &str) -> Result<Vec<Directive>, Vec<BlockError>> {
        parse(s.as_bytes(), "t.conf", Dialect::Keepalived)
    }

    #[test]
    fn keepalived_blocks_comments_quotes() {
        let t = ka("! comment\nvrrp_instance VI_1 {  # trailing\n state MASTER\n notify \"/bin/x a\"\n virtual_ipaddress {\n  1.2.3.4/24 dev eth0\n }\n}\nvirtual_server 1.2.3.4 80\n{\n delay_loop 6\n}\n").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "vrrp_instance");
        assert_eq!(t[0].args, ["VI_1"]);
        let c = t[0].children();
        assert_eq!(c[0].text(), "state MASTER");
        let nbsp = ka("priority\u{a0}\u{a0}100\u{3000}x\n").unwrap();
        assert_eq!(nbsp[0].args, ["100", "x"]);
        assert_eq!(c[1].args, ["/bin/x a"]);
        assert_eq!(c[2].children()[0].args, ["dev", "eth0"]);
        assert_eq!(c[2].children()[0].pos.line, 6);
        // `{` on the line after the name opens that directive's block.
        assert_eq!(t[1].args, ["1.2.3.4", "80"]);
        assert_eq!(t[1].children()[0].text(), "delay_loop 6");
    }

    #[test]
    fn nginx_semicolons() {
        let t = parse(
            b"listen 1935;\nvhost __defaultVhost__ {\n cluster { mode remote; origin a:1 b:2; }\n}\n",
            "srs.conf",
            Dialect::Nginx,
        )
        .unwrap();
        assert_eq!(t[0].text(), "listen 1935");
        let cl = &t[1].children()[0];
        assert_eq!(cl.children()[1].args, ["a:1", "b:2"]);
        let e = parse(
            b"listen 1935\nmax_connections 3;\nx {\n y\n}\n",
            "s",
            Dialect::Nginx,
        )
        .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].pos.line, 4, "{e:?}");
    }

    #[test]
    fn bad_input_is_an_error_with_its_line_never_a_panic() {
        let e = ka("a {\n b {\n").unwrap_err();
        assert!(e.iter().all(|e| e.why.contains("not closed")), "{e:?}");
        assert_eq!(e[0].pos.line, 2);
        let e = ka("a\n}\n").unwrap_err();
        assert_eq!(e[0].to_string(), "t.conf:2: `}` closes no block");
        let e = ka("a \"unterminated\nb\n").unwrap_err();
        assert_eq!(e[0].to_string(), "t.conf:1: unterminated quoted string");
        let deep = "a {\n".repeat(10_000);
        let e = ka(&deep).unwrap_err();
        assert!(e[0].why.contains("deeper"), "{e:?}");
        let e = ka("{\n").unwrap_err();
        assert!(e[0].why.contains("without a name"), "{e:?}");
        // Binary garbage: every byte value, pseudo-random sequences, both dialects.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..200 {
            let len = (round * 37) % 2000;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect();
            let _ = parse(&bytes, "g", Dialect::Keepalived);
            let _ = parse(&bytes, "g", Dialect::Nginx);
        }
        let all: Vec<u8> = (0..=255u8).collect();
        assert!(parse(&all, "g", Dialect::Keepalived).is_err());
        let e = parse(b"x \xff\xfe\n", "g", Dialect::Keepalived).unwrap_err();
        assert_eq!(e[0].to_string(), "g:1: is not UTF-8 text");
    }

    #[test]
    fn includes_globs_and_loops() {
        let dir = std::env::temp_dir().join(format!("confblock-{}", std::process::id()));
        let sub = dir.join("conf.d");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(dir.join("main.conf"), "a 1\ninclude conf.d/*.conf\nz 9\n").unwrap();
        std::fs::write(sub.join("b.conf"), "b 2\n").unwrap();
        std::fs::write(sub.join("c.conf"), "c 3 {\n include ../leaf.inc\n}\n").unwrap();
        std::fs::write(sub.join("c.txt"), "nope\n").unwrap();
        std::fs::write(dir.join("leaf.inc"), "leaf\n").unwrap();
        let t = load(&dir.join("main.conf"), Dialect::Keepalived).unwrap();
        let names: Vec<_> = t.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "z"]);
        assert_eq!(t[2].children()[0].name, "leaf");
        assert!(t[2].children()[0].pos.file.ends_with("leaf.inc"));

        std::fs::write(dir.join("loop1.conf"), "include loop2.conf\n").unwrap();
        std::fs::write(dir.join("loop2.conf"), "x\ninclude loop1.conf\n").unwrap();
        let e = load(&dir.join("loop1.conf"), Dialect::Keepalived).unwrap_err();
        assert!(e[0].why.contains("include loop"), "{e:?}");
        assert!(e[0].to_string().contains("loop2.conf:2"), "{e:?}");
        std::fs::write(dir.join("self.conf"), "include self.conf\n").unwrap();
        assert!(load(&dir.join("self.conf"), Dialect::Keepalived).is_err());
        std::fs::write(dir.join("missing.conf"), "\ninclude nothere.conf\n").unwrap();
        let e = load(&dir.join("missing.conf"), Dialect::Keepalived).unwrap_err();
        assert!(
            e[0].to_string().contains("missing.conf:2: cannot read"),
            "{e:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn glob() {
        let m = |p: &str, n: &str| {
            glob_match(
                &p.chars().collect::<Vec<_>>(),
                &n.chars().collect::<Vec<_>>(),
            )
        };
        assert!(m("*.conf", "a.conf"));
        assert!(!m("*.conf", "a.conf.bak"));
        assert!(m("a?[0-9]*", "ab7xyz"));
        assert!(m("[!x]*", "y"));
        assert!(!m("[!x]*", "x"));
        assert!(m("[", "["));
        assert!(!m("a*a*a*a*b", &"a".repeat(200)));
    }
}
