//! `edge import-srs`: an srs.conf turned into the edge TOML that does the same.
//!
//! Reads the tree of `common::confblock` (nginx dialect: directives end with `;`, includes
//! spliced) and writes `common::tomlout` sections. The `__defaultVhost__`'s keys (SRS 2's
//! flat `mode`/`origin`, SRS 3's `cluster { }` and `play { }`) go to the top level, since the
//! edge has no vhosts. What cannot be carried over becomes a `# srs: DIRECTIVE: why`
//! comment (the hints of `crate::config`'s SRS_ONLY where it has one) and is counted in
//! [`Import::skipped`] for `--strict`. A value SRS itself would refuse (`gop_cache maybe`)
//! is an [`ImportError`] naming its file:line.

use crate::config::srs_hint;
use common::confblock::{self, BlockError, Dialect, Directive, Pos};
use common::tomlout::{render, Section};
use std::path::Path;

/// The TOML, and the directives it could not carry (each also a comment in it).
#[derive(Debug)]
pub struct Import {
    pub toml: String,
    pub skipped: Vec<String>,
}

/// One problem of the input, at its file:line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Syntax(#[from] BlockError),
    #[error("{pos}: {why}")]
    Value { pos: Pos, why: String },
}

/// Reads `path` (and its includes) and converts it.
pub fn srs_file(path: &Path) -> Result<Import, Vec<ImportError>> {
    let tree = confblock::load(path, Dialect::Nginx)
        .map_err(|e| e.into_iter().map(ImportError::from).collect::<Vec<_>>())?;
    srs(&tree)
}

/// Converts text (includes are not followed: see [`srs_file`]).
pub fn srs_str(src: &str, name: &str) -> Result<Import, Vec<ImportError>> {
    let tree = confblock::parse(src.as_bytes(), name, Dialect::Nginx)
        .map_err(|e| e.into_iter().map(ImportError::from).collect::<Vec<_>>())?;
    srs(&tree)
}

struct Cx {
    errs: Vec<ImportError>,
    skipped: Vec<String>,
    top: Section,
    publish: Vec<String>,
    api: Option<String>,
    /// `http_server` enabled: `[http]`.
    http: Option<Section>,
    /// The default vhost's enabled `hls` / `http_remux`: `[hls]`, `[http] flv`.
    hls: Option<Section>,
    flv: Option<bool>,
    /// The default vhost's enabled `http_hooks`: `[http_hooks]`.
    hooks: Option<Section>,
}

impl Cx {
    fn bad(&mut self, d: &Directive, why: impl Into<String>) {
        self.errs.push(ImportError::Value {
            pos: d.pos.clone(),
            why: format!("{}: {}", d.text(), why.into()),
        });
    }

    fn skip(&mut self, d: &Directive, why: &str) {
        self.skip_text(&d.pos, &shown(d), why);
    }

    fn skip_text(&mut self, pos: &Pos, what: &str, why: &str) {
        self.top.comment(&format!("srs: {what}: {why}"));
        self.skipped.push(format!("{pos}: {what}"));
    }

    fn one<'a>(&mut self, d: &'a Directive) -> Option<&'a str> {
        match d.args.as_slice() {
            [a] => Some(a),
            _ => {
                self.bad(d, "takes one value");
                None
            }
        }
    }

    fn int(&mut self, d: &Directive) -> Option<i64> {
        let a = self.one(d)?;
        match a.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.bad(d, format!("{a:?} is not a whole number"));
                None
            }
        }
    }

    fn num(&mut self, d: &Directive) -> Option<f64> {
        let a = self.one(d)?;
        match a.parse::<f64>() {
            Ok(n) if n.is_finite() => Some(n),
            _ => {
                self.bad(d, format!("{a:?} is not a number"));
                None
            }
        }
    }

    fn on_off(&mut self, d: &Directive) -> Option<bool> {
        match self.one(d)? {
            "on" => Some(true),
            "off" => Some(false),
            other => {
                self.bad(d, format!("{other:?} is not on or off"));
                None
            }
        }
    }
}

/// A directive as a comment shows it (`name args { ... }` for a block).
fn shown(d: &Directive) -> String {
    if d.block.is_some() {
        format!("{} {{ ... }}", d.text())
    } else {
        d.text()
    }
}

/// SRS's `listen PORT` / `listen IP:PORT` as an address.
fn listen_addr(a: &str) -> String {
    if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) {
        format!("0.0.0.0:{a}")
    } else {
        a.to_string()
    }
}

/// Converts a parsed srs.conf.
pub fn srs(tree: &[Directive]) -> Result<Import, Vec<ImportError>> {
    let mut top = Section::top();
    top.comment("edge config imported from srs.conf by `edge import-srs`");
    let mut cx = Cx {
        errs: Vec::new(),
        skipped: Vec::new(),
        top,
        publish: Vec::new(),
        api: None,
        http: None,
        hls: None,
        flv: None,
        hooks: None,
    };
    let mut security = false;
    for d in tree {
        match d.name.as_str() {
            "listen" => match d.args.split_first() {
                Some((first, rest)) => {
                    cx.top.set("listen", listen_addr(first));
                    if !rest.is_empty() {
                        cx.skip(
                            d,
                            &format!(
                                "the edge listens on one address: {} is carried over, not {}",
                                listen_addr(first),
                                rest.join(" ")
                            ),
                        );
                    }
                }
                None => cx.bad(d, "wants a port"),
            },
            "max_connections" | "chunk_size" => {
                if let Some(n) = cx.int(d) {
                    cx.top.set(&d.name, n);
                }
            }
            "srs_log_level" => {
                // SRS's levels, most to least verbose, as tracing filters.
                let level = match cx.one(d) {
                    Some("verbose") => Some("trace"),
                    Some("info") => Some("debug"),
                    Some("trace") => Some("info"),
                    Some("warn") => Some("warn"),
                    Some("error") => Some("error"),
                    Some(other) => {
                        cx.bad(
                            d,
                            format!("{other:?} is not verbose, info, trace, warn or error"),
                        );
                        None
                    }
                    None => None,
                };
                if let Some(l) = level {
                    cx.top.set("log_level", l);
                }
            }
            "http_api" => http_api(&mut cx, d),
            "http_server" => http_server(&mut cx, d),
            "vhost" => {
                if d.args.len() == 1 && d.args[0] == "__defaultVhost__" {
                    security |= vhost(&mut cx, d);
                } else {
                    cx.skip(
                        d,
                        "there are no vhosts here: only __defaultVhost__'s keys are carried over",
                    );
                }
            }
            _ => {
                let why =
                    srs_hint(&d.name).unwrap_or("not supported by the edge (no equivalent key)");
                cx.skip(d, why);
            }
        }
    }
    let remote = cx.top.get_str("mode") == Some("remote");
    if !remote && cx.top.remove("origin") {
        cx.top.comment(
            "srs: origin: left out: SRS reads origin only with mode remote, and so does the edge",
        );
    }
    if !remote && !security {
        // Not counted as skipped: nothing is left out, but the default differs.
        cx.top.comment("srs: (no security block): SRS lets any address publish; the edge allows loopback only unless [publish] allow lists the encoders' addresses");
    }
    if !cx.errs.is_empty() {
        return Err(cx.errs);
    }
    let mut sections = vec![std::mem::take(&mut cx.top)];
    if security {
        let mut p = Section::table("publish");
        p.set("allow", cx.publish.clone());
        sections.push(p);
    }
    if let Some(a) = &cx.api {
        let mut s = Section::table("api");
        s.set("listen", a.as_str());
        sections.push(s);
    }
    let wants_http = cx.hls.is_some() || cx.flv == Some(true);
    if cx.http.is_none() && wants_http {
        let mut h = Section::table("http");
        h.comment("srs: (no http_server): SRS writes HLS to disk for another web server; the edge serves it itself here");
        h.set("listen", "0.0.0.0:8080");
        cx.http = Some(h);
    }
    if let Some(mut h) = cx.http.take() {
        if let Some(flv) = cx.flv {
            h.set("flv", flv);
        }
        sections.push(h);
        // SRS serves no HLS unless the vhost enables it; the edge would by default.
        let hls = cx.hls.take().unwrap_or_else(|| {
            let mut s = Section::table("hls");
            s.set("enabled", false);
            s
        });
        sections.push(hls);
    }
    if let Some(h) = cx.hooks.take() {
        sections.push(h);
    }
    Ok(Import {
        toml: render(&sections),
        skipped: cx.skipped,
    })
}

fn http_api(cx: &mut Cx, d: &Directive) {
    let mut enabled = false;
    let mut listen = "0.0.0.0:1985".to_string();
    for c in d.children() {
        match c.name.as_str() {
            "enabled" => enabled = cx.on_off(c).unwrap_or(false),
            "listen" => {
                if let Some(a) = cx.one(c) {
                    listen = listen_addr(a);
                }
            }
            _ => cx.skip_text(
                &c.pos,
                &format!("http_api {}", c.text()),
                "not supported: the edge's API is read-only JSON (/api/v1/streams, /metrics) on [api] listen",
            ),
        }
    }
    if enabled {
        cx.api = Some(listen);
    }
}

fn http_server(cx: &mut Cx, d: &Directive) {
    let mut enabled = false;
    let mut h = Section::table("http");
    for c in d.children() {
        match c.name.as_str() {
            "enabled" => enabled = cx.on_off(c).unwrap_or(false),
            "listen" => {
                if let Some(a) = cx.one(c) {
                    h.set("listen", listen_addr(a));
                }
            }
            "crossdomain" => {
                if let Some(on) = cx.on_off(c) {
                    h.set("crossdomain", on);
                }
            }
            _ => cx.skip_text(
                &c.pos,
                &format!("http_server {}", c.text()),
                "not supported: the edge serves streams (HTTP-FLV, HLS) from memory, no files",
            ),
        }
    }
    if enabled {
        cx.http = Some(h);
    }
}

/// vhost `hls { enabled on; hls_fragment S; hls_window S; }`: `[hls]`.
fn hls_block(cx: &mut Cx, d: &Directive) {
    let mut enabled = false;
    let mut s = Section::table("hls");
    for c in d.children() {
        match c.name.as_str() {
            "enabled" => enabled = cx.on_off(c).unwrap_or(false),
            "hls_fragment" | "hls_window" => {
                if let Some(n) = cx.num(c) {
                    s.set(&c.name, n);
                }
            }
            "hls_path" | "hls_m3u8_file" | "hls_ts_file" | "hls_cleanup" | "hls_dispose" => {
                cx.skip_text(&c.pos, &format!("hls {}", c.text()), "not needed: segments live in memory, named by the deterministic rule (README: Browsers)")
            }
            _ => cx.skip_text(
                &c.pos,
                &format!("hls {}", c.text()),
                "not supported: see [hls] in the README (hls_fragment, hls_window, hls_part)",
            ),
        }
    }
    if enabled {
        cx.hls = Some(s);
    }
}

/// vhost `http_remux { enabled on; mount ...; }`: `[http] flv`.
fn http_remux(cx: &mut Cx, d: &Directive) {
    for c in d.children() {
        match c.name.as_str() {
            "enabled" => cx.flv = cx.on_off(c),
            "mount" => {
                if c.args.first().map(String::as_str) != Some("[vhost]/[app]/[stream].flv") {
                    cx.skip_text(
                        &c.pos,
                        &format!("http_remux {}", c.text()),
                        "not supported: HTTP-FLV is always at /APP/STREAM.flv",
                    );
                }
            }
            _ => cx.skip_text(
                &c.pos,
                &format!("http_remux {}", c.text()),
                "not supported by the edge's HTTP-FLV",
            ),
        }
    }
}

/// vhost `http_hooks { enabled on; on_publish URL; on_play URL; on_unpublish URL; on_stop
/// URL; }`: `[http_hooks]` (SRS's on_unpublish and on_stop are both `on_done`).
fn http_hooks(cx: &mut Cx, d: &Directive) {
    let mut enabled = false;
    let mut s = Section::table("http_hooks");
    s.comment("srs: http_hooks: EdgeFleet posts nginx-rtmp's form fields (call, addr, clientid, app, name, tcurl, and the client's ?args), not SRS's JSON; an answer of 2xx allows unless its body is SRS's refusal (a non-zero `code` or number); adapt the service to read the form (README: HTTP hooks)");
    let mut done: Option<String> = None;
    for c in d.children() {
        let key = match c.name.as_str() {
            "enabled" => {
                enabled = cx.on_off(c).unwrap_or(false);
                continue;
            }
            "on_publish" => "on_publish",
            "on_play" => "on_play",
            "on_unpublish" | "on_stop" => "on_done",
            _ => {
                cx.skip_text(
                    &c.pos,
                    &format!("http_hooks {}", c.text()),
                    "not supported: the edge calls on_publish, on_play and on_done only",
                );
                continue;
            }
        };
        let Some(first) = c.args.first() else {
            cx.bad(c, "needs a URL");
            continue;
        };
        if let Err(e) = crate::hooks::HookUrl::parse(first) {
            cx.bad(c, e);
            continue;
        }
        if c.args.len() > 1 {
            cx.skip_text(
                &c.pos,
                &format!("http_hooks {}", c.text()),
                "not supported: one URL per hook; only the first is carried over",
            );
        }
        if key == "on_done" {
            match &done {
                Some(d0) if d0 != first => {
                    cx.skip_text(
                        &c.pos,
                        &format!("http_hooks {}", c.text()),
                        "not supported: on_unpublish and on_stop become one on_done; the first URL is kept",
                    );
                    continue;
                }
                Some(_) => continue,
                None => done = Some(first.clone()),
            }
        }
        s.set(key, first.as_str());
    }
    if enabled {
        cx.hooks = Some(s);
    }
}

/// The default vhost's keys at the top level; whether it had an enabled security block.
fn vhost(cx: &mut Cx, d: &Directive) -> bool {
    let mut security = false;
    for c in d.children() {
        match c.name.as_str() {
            "mode" | "origin" | "gop_cache" | "queue_length" | "mw_latency" | "chunk_size" => {
                vhost_key(cx, c)
            }
            "cluster" | "play" => {
                for k in c.children() {
                    match k.name.as_str() {
                        "mode" | "origin" | "gop_cache" | "queue_length" | "mw_latency" => {
                            vhost_key(cx, k)
                        }
                        _ => {
                            let why = hint_in_vhost(&k.name);
                            cx.skip_text(&k.pos, &format!("{} {}", c.name, shown(k)), why);
                        }
                    }
                }
            }
            "security" => security |= security_block(cx, c),
            "hls" => hls_block(cx, c),
            "http_remux" => http_remux(cx, c),
            "http_hooks" => http_hooks(cx, c),
            _ => {
                let why = hint_in_vhost(&c.name);
                cx.skip_text(&c.pos, &format!("vhost {}", shown(c)), why);
            }
        }
    }
    security
}

fn hint_in_vhost(name: &str) -> &'static str {
    match name {
        "mr" => "not needed: the edge reads each connection as data arrives (no merged-read delay)",
        "hds" | "dvr" | "transcode" | "exec" | "forward" | "ingest"
        | "rtc" | "srt" => "not supported: the edge serves RTMP (and HTTP-FLV where built in); run a separate packager for it",
        "refer" | "refer_play" | "refer_publish" => "not supported: restrict publishers with [publish] allow and [publish] key",
        "publish" => "not needed: the edge has no publish tuning (merged reads, first-packet timeouts); see handshake_timeout",
        _ => srs_hint(name).unwrap_or("not supported by the edge (no equivalent key)"),
    }
}

fn vhost_key(cx: &mut Cx, k: &Directive) {
    match k.name.as_str() {
        "mode" => match cx.one(k) {
            Some(m @ ("remote" | "local")) => cx.top.set("mode", m),
            Some(other) => cx.bad(k, format!("{other:?} is not remote or local")),
            None => {}
        },
        "origin" => {
            if k.args.is_empty() {
                cx.bad(k, "wants one or more HOST:PORT");
            } else {
                cx.top.set("origin", k.args.clone());
            }
        }
        "gop_cache" => {
            if let Some(b) = cx.on_off(k) {
                cx.top.set("gop_cache", b);
            }
        }
        "queue_length" => {
            if let Some(n) = cx.num(k) {
                cx.top.set("queue_length", n);
            }
        }
        _ => {
            if let Some(n) = cx.int(k) {
                cx.top.set(&k.name, n);
            }
        }
    }
}

/// `security { enabled on; allow publish X; ... }`: the publish allow rules.
fn security_block(cx: &mut Cx, d: &Directive) -> bool {
    let enabled = d
        .children()
        .iter()
        .any(|c| c.name == "enabled" && c.args.first().map(String::as_str) == Some("on"));
    if !enabled {
        if d.children().len() > 1 {
            cx.skip(d, "security is not enabled: its rules are not carried over");
        }
        return false;
    }
    for c in d.children() {
        match (c.name.as_str(), c.args.as_slice()) {
            ("enabled", _) => {}
            ("allow", [what, who]) if what == "publish" => {
                if who == "all" {
                    cx.publish.push("0.0.0.0/0".into());
                    cx.publish.push("::/0".into());
                } else {
                    cx.publish.push(who.clone());
                }
            }
            ("allow" | "deny", [what, _]) if what == "play" => cx.skip_text(
                &c.pos,
                &format!("security {}", c.text()),
                "not supported: every address may play (put the edges behind lb)",
            ),
            ("deny", [what, _]) if what == "publish" => cx.skip_text(
                &c.pos,
                &format!("security {}", c.text()),
                "not supported: there is no deny list; only the [publish] allow addresses may publish",
            ),
            _ => cx.bad(c, "is not `allow|deny publish|play ADDRESS`"),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EdgeConfig, Mode};

    const SRS3: &str = "listen 1935 19350;\nmax_connections 500;\ndaemon off;\nsrs_log_tank console;\nsrs_log_level warn;\nhttp_api {\n enabled on;\n listen 1985;\n crossdomain on;\n}\nhttp_server {\n enabled on;\n}\nvhost __defaultVhost__ {\n cluster {\n  mode remote;\n  origin 198.18.7.1:1935 198.18.7.2;\n  token_traverse on;\n }\n play {\n  gop_cache on;\n  queue_length 5;\n  mw_latency 350;\n }\n hls {\n  enabled on;\n }\n}\nvhost other.example {\n}\n";

    #[test]
    fn srs3_cluster_and_play_blocks_land_at_the_top_level() {
        let imp = srs_str(SRS3, "srs.conf").unwrap();
        let c = EdgeConfig::parse(&imp.toml).unwrap_or_else(|e| panic!("{e}\n{}", imp.toml));
        assert_eq!(c.listen, "0.0.0.0:1935".parse().unwrap());
        assert_eq!(c.mode, Mode::Remote);
        assert_eq!(
            c.origin,
            [
                ("198.18.7.1".to_string(), 1935),
                ("198.18.7.2".to_string(), 1935)
            ]
        );
        assert_eq!(c.max_connections, 500);
        assert!(c.gop_cache);
        assert_eq!(c.queue_length.as_secs(), 5);
        assert_eq!(c.mw_latency.as_millis(), 350);
        assert_eq!(c.log_level, "warn");
        assert_eq!(c.api, Some("0.0.0.0:1985".parse().unwrap()));
        // http_server and the vhost's hls: [http] on SRS's default port, HLS on.
        let http = c.http.as_ref().expect("http_server becomes [http]");
        assert_eq!(http.listen.port(), 8080);
        assert!(http.hls.is_some());
        for k in [
            "listen 1935 19350",
            "daemon off",
            "srs_log_tank console",
            "http_api crossdomain on",
            "cluster token_traverse on",
            "vhost other.example { ... }",
        ] {
            assert_eq!(
                imp.toml.matches(&format!("# srs: {k}:")).count(),
                1,
                "{k}\n{}",
                imp.toml
            );
        }
        assert_eq!(imp.skipped.len(), 6, "{:?}", imp.skipped);
    }

    #[test]
    fn security_allow_publish_becomes_publish_allow() {
        let imp = srs_str(
            "vhost __defaultVhost__ {\n security {\n  enabled on;\n  allow publish 198.19.0.0/16;\n  allow publish 127.0.0.1;\n  deny publish all;\n  allow play all;\n }\n}\n",
            "s.conf",
        )
        .unwrap();
        let c = EdgeConfig::parse(&imp.toml).unwrap_or_else(|e| panic!("{e}\n{}", imp.toml));
        assert!(c.publish.allows("198.19.2.3".parse().unwrap()));
        assert!(!c.publish.allows("198.18.9.1".parse().unwrap()));
        assert_eq!(imp.skipped.len(), 2, "{}", imp.toml);
    }

    #[test]
    fn http_hooks_become_http_hooks() {
        let imp = srs_str(
            "vhost __defaultVhost__ {\n http_hooks {\n  enabled on;\n  on_publish http://127.0.0.1:8085/api/v1/streams http://127.0.0.1:8086/x;\n  on_play http://127.0.0.1:8085/api/v1/sessions;\n  on_unpublish http://127.0.0.1:8085/api/v1/streams;\n  on_stop http://127.0.0.1:8085/api/v1/sessions;\n  on_dvr http://127.0.0.1:8085/api/v1/dvrs;\n }\n}\n",
            "s.conf",
        )
        .unwrap();
        let c = EdgeConfig::parse(&imp.toml).unwrap_or_else(|e| panic!("{e}\n{}", imp.toml));
        let h = &c.http_hooks;
        assert_eq!(
            h.on_publish.as_ref().unwrap().to_string(),
            "http://127.0.0.1:8085/api/v1/streams"
        );
        assert_eq!(
            h.on_play.as_ref().unwrap().to_string(),
            "http://127.0.0.1:8085/api/v1/sessions"
        );
        assert_eq!(
            h.on_done.as_ref().unwrap().to_string(),
            "http://127.0.0.1:8085/api/v1/streams"
        );
        // The second on_publish URL, on_stop's other URL and on_dvr: one comment each.
        assert_eq!(imp.skipped.len(), 3, "{}", imp.toml);
        assert!(imp.toml.contains("not SRS's JSON"), "{}", imp.toml);
        let e = srs_str(
            "vhost __defaultVhost__ {\n http_hooks {\n  enabled on;\n  on_play https://x/y;\n }\n}\n",
            "s.conf",
        )
        .unwrap_err();
        assert!(
            e[0].to_string()
                .starts_with("s.conf:4: on_play https://x/y"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_values_name_their_line() {
        let e = srs_str(
            "listen 1935;\nvhost __defaultVhost__ {\n gop_cache maybe;\n mode edge;\n}\n",
            "s.conf",
        )
        .unwrap_err();
        let s: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].starts_with("s.conf:3: gop_cache maybe: "), "{s:?}");
        assert!(s[1].starts_with("s.conf:4: mode edge: "), "{s:?}");
        let e = srs_str("listen 1935\nvhost x {\n", "s.conf").unwrap_err();
        assert!(!e.is_empty());
        for s in [
            "}",
            ";",
            "listen;",
            "vhost __defaultVhost__ { security { enabled on; allow; } }",
            "\u{0}",
        ] {
            let _ = srs_str(s, "x");
        }
    }
}
