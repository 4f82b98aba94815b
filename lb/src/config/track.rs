//! keepalived's `vrrp_script` / `track_script` and `vrrp_sync_group`, as TOML:
//!
//! ```toml
//! [[vrrp_script]]
//! name = "chk_edge"
//! script = "/usr/local/bin/chk_edge 198.18.0.11"   # split into words as keepalived does
//! interval = 2        # seconds between runs (1)
//! timeout = 2         # a run taking longer is killed and fails (interval)
//! weight = -30        # -253..=253 (0): see below
//! rise = 2            # successes that make a failed script OK again (1)
//! fall = 2            # failures that make an OK script failed (1)
//!
//! [[vrrp_instance]]
//! track_script = ["chk_edge", { name = "chk_other", weight = 10 }]
//!
//! [[vrrp_sync_group]]
//! name = "G1"
//! group = ["VI_1", "VI_2"]
//! ```
//!
//! Weights as keepalived: a negative weight lowers the instance's priority while the script
//! fails, a positive one raises it while it succeeds, 0 puts the instance in FAULT while it
//! fails. In a sync group the weights count as 0 (a failing script faults the instance, and
//! so the whole group), as keepalived does unless `sync_group_tracking_weight = true`.
//!
//! Validation resolves the names: each [`VrrpConfig`](super::VrrpConfig) carries its tracked
//! scripts and its group whole, so a reload that changes a script or a group restarts the
//! instances that use it (see `crate::reload`).

use super::V;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawScript {
    pub name: Option<String>,
    pub script: Option<String>,
    pub interval: Option<f64>,
    pub timeout: Option<f64>,
    pub weight: Option<i64>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawSyncGroup {
    pub name: Option<String>,
    pub group: Option<Vec<String>>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    pub notify: Option<String>,
    pub sync_group_tracking_weight: Option<bool>,
}

/// One validated `vrrp_script`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptConfig {
    pub name: String,
    /// As written (for logs and status).
    pub script: String,
    /// The words it runs: program and arguments (see [`split_words`]).
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub weight: i32,
    pub rise: u32,
    pub fall: u32,
}

/// A script an instance tracks, with the weight that applies to this instance.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackScript {
    pub script: ScriptConfig,
    pub weight: i32,
}

/// One validated `vrrp_sync_group`.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncGroupConfig {
    pub name: String,
    pub members: Vec<String>,
    pub notify_master: Option<String>,
    pub notify_backup: Option<String>,
    pub notify_fault: Option<String>,
    pub notify: Option<String>,
    pub tracking_weight: bool,
}

/// keepalived's word splitting of a script line: words split at blanks, `"..."` and `'...'`
/// group, a backslash takes the next character as it is. No shell: write
/// `/bin/sh -c '...'` for pipes, globs or variables.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => match chars.next() {
                Some(n) => {
                    cur.push(n);
                    in_word = true;
                }
                None => return Err("ends with a lone backslash".into()),
            },
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("a {q} quote is not closed"));
    }
    if in_word {
        words.push(cur);
    }
    if words.is_empty() {
        return Err("is empty".into());
    }
    Ok(words)
}

impl RawScript {
    pub(super) fn validate(self, v: &mut V) -> Option<ScriptConfig> {
        let name = self.name.clone().unwrap_or_default();
        if name.is_empty() {
            v.err("name", "is required (keepalived's vrrp_script NAME)");
        }
        let script = self.script.clone().unwrap_or_default();
        let argv = match split_words(&script) {
            Ok(a) => a,
            Err(e) => {
                v.err(
                    "script",
                    format!("{script:?} {e}: give the command to run, as \"/usr/local/bin/chk_edge 198.18.0.11\""),
                );
                Vec::new()
            }
        };
        let interval = v.secs("interval", self.interval, 1.0, 0.01, 86400.0);
        let timeout = v.secs(
            "timeout",
            self.timeout,
            interval.as_secs_f64(),
            0.01,
            86400.0,
        );
        let weight = v.int("weight", self.weight, 0, -253, 253) as i32;
        let rise = v.int("rise", self.rise, 1, 1, 1000) as u32;
        let fall = v.int("fall", self.fall, 1, 1, 1000) as u32;
        Some(ScriptConfig {
            name,
            script,
            argv,
            interval,
            timeout,
            weight,
            rise,
            fall,
        })
    }
}

/// Reads `track_script = ["NAME", { name = "NAME", weight = N }]` against the scripts.
pub(super) fn track_scripts(
    v: &mut V,
    raw: Option<Vec<toml::Value>>,
    scripts: &[ScriptConfig],
) -> Vec<TrackScript> {
    let mut out: Vec<TrackScript> = Vec::new();
    for (i, item) in raw.unwrap_or_default().into_iter().enumerate() {
        let key = format!("track_script[{i}]");
        let (name, weight) = match &item {
            toml::Value::String(s) => (s.clone(), None),
            toml::Value::Table(t) => {
                for k in t.keys().filter(|k| *k != "name" && *k != "weight") {
                    v.err(
                        &format!("{key}.{k}"),
                        "unknown key (the keys here: name, weight)",
                    );
                }
                let name = match t.get("name") {
                    Some(toml::Value::String(s)) => s.clone(),
                    _ => {
                        v.err(&format!("{key}.name"), "is required: a vrrp_script's name");
                        continue;
                    }
                };
                let weight = match t.get("weight") {
                    None => None,
                    Some(toml::Value::Integer(w)) => {
                        Some(v.int(&format!("{key}.weight"), Some(*w), 0, -253, 253) as i32)
                    }
                    Some(other) => {
                        v.err(
                            &format!("{key}.weight"),
                            format!("{other} is not a whole number -253..=253"),
                        );
                        None
                    }
                };
                (name, weight)
            }
            other => {
                v.err(
                    &key,
                    format!("{other} is not a script name or {{ name = \"...\", weight = N }}"),
                );
                continue;
            }
        };
        let Some(s) = scripts.iter().find(|s| s.name == name) else {
            v.err(&key, format!("no [[vrrp_script]] is named {name:?}"));
            continue;
        };
        if out.iter().any(|t| t.script.name == name) {
            v.err(&key, format!("{name:?} is tracked twice"));
            continue;
        }
        out.push(TrackScript {
            script: s.clone(),
            weight: weight.unwrap_or(s.weight),
        });
    }
    out
}

impl RawSyncGroup {
    pub(super) fn validate(self, v: &mut V, instances: &[String]) -> Option<SyncGroupConfig> {
        let name = self.name.clone().unwrap_or_default();
        if name.is_empty() {
            v.err("name", "is required (keepalived's vrrp_sync_group NAME)");
        }
        let members = self.group.clone().unwrap_or_default();
        if members.is_empty() {
            v.err(
                "group",
                "needs the names of its vrrp_instances, as [\"VI_1\", \"VI_2\"]",
            );
        }
        for (i, m) in members.iter().enumerate() {
            if !instances.contains(m) {
                v.err(
                    &format!("group[{i}]"),
                    format!("no [[vrrp_instance]] is named {m:?}"),
                );
            }
            if members[..i].contains(m) {
                v.err(&format!("group[{i}]"), format!("{m:?} is listed twice"));
            }
        }
        Some(SyncGroupConfig {
            name,
            members,
            notify_master: self.notify_master,
            notify_backup: self.notify_backup,
            notify_fault: self.notify_fault,
            notify: self.notify,
            tracking_weight: self.sync_group_tracking_weight.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_keepalived() {
        assert_eq!(
            split_words("/bin/test -f '/run/a b'").unwrap(),
            ["/bin/test", "-f", "/run/a b"]
        );
        assert_eq!(
            split_words(r#"  x "a\"b" c\ d ''"#).unwrap(),
            ["x", "a\"b", "c d", ""]
        );
        assert!(split_words("a 'b").is_err());
        assert!(split_words("   ").is_err());
        assert!(split_words("a \\").is_err());
    }
}
