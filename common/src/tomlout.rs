//! The TOML an importer prints: tables in order, each with its keys and the comments that
//! say what was left out. Values are written by the `toml` crate (no hand escaping); keys
//! are the importers' own fixed names. A key set twice keeps its first place and takes the
//! last value (keepalived and SRS read the last), so the output never has a duplicate key.

/// One `[table]` / `[[array.table]]` (or the top level, header `None`).
#[derive(Debug, Default)]
pub struct Section {
    header: Option<String>,
    items: Vec<Item>,
}

#[derive(Debug)]
enum Item {
    Kv(String, toml::Value),
    Comment(String),
}

impl Section {
    /// The top level.
    pub fn top() -> Section {
        Section::default()
    }

    /// `[name]`.
    pub fn table(name: &str) -> Section {
        Section {
            header: Some(format!("[{name}]")),
            items: Vec::new(),
        }
    }

    /// `[[name]]`.
    pub fn array(name: &str) -> Section {
        Section {
            header: Some(format!("[[{name}]]")),
            items: Vec::new(),
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) {
        let value = value.into();
        for it in &mut self.items {
            if let Item::Kv(k, v) = it {
                if k == key {
                    *v = value;
                    return;
                }
            }
        }
        self.items.push(Item::Kv(key.to_string(), value));
    }

    pub fn has(&self, key: &str) -> bool {
        self.items
            .iter()
            .any(|it| matches!(it, Item::Kv(k, _) if k == key))
    }

    /// The string value of `key`, if set to a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.items.iter().find_map(|it| match it {
            Item::Kv(k, toml::Value::String(v)) if k == key => Some(v.as_str()),
            _ => None,
        })
    }

    /// Removes `key`; whether it was set.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.items.len();
        self.items
            .retain(|it| !matches!(it, Item::Kv(k, _) if k == key));
        self.items.len() != before
    }

    /// A `# text` line (control characters become spaces: a comment stays one line).
    pub fn comment(&mut self, text: &str) {
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self.items.push(Item::Comment(clean));
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The sections in order as TOML text.
pub fn render(sections: &[Section]) -> String {
    let mut out = String::new();
    for s in sections {
        if s.header.is_none() && s.items.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        if let Some(h) = &s.header {
            out.push_str(h);
            out.push('\n');
        }
        for it in &s.items {
            match it {
                Item::Kv(k, v) => out.push_str(&format!("{k} = {v}\n")),
                Item::Comment(c) => out.push_str(&format!("# {c}\n")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_keys_unique() {
        let mut top = Section::top();
        top.comment("line\nbreak");
        top.set("a", "quote \" and \\ and \n");
        top.set("b", 1);
        top.set("a", "last");
        let mut t = Section::array("x");
        t.set("list", vec!["1", "2"]);
        let text = render(&[top, t]);
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["a"].as_str(), Some("last"));
        assert_eq!(parsed["x"][0]["list"][1].as_str(), Some("2"));
        assert!(text.starts_with("# line break\n"), "{text}");
        let mut esc = Section::top();
        esc.set("s", "quote \" and \\ and \n");
        let parsed: toml::Table = render(&[esc]).parse().unwrap();
        assert_eq!(parsed["s"].as_str(), Some("quote \" and \\ and \n"));
    }
}
