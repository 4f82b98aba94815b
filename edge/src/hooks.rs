//! HTTP hooks (`[http_hooks]`): the site's own service decides who publishes and plays, as with
//! nginx-rtmp's `on_publish` / `on_play` / `on_done` and SRS's `http_hooks`.
//!
//! A hook is an HTTP POST of an `application/x-www-form-urlencoded` body, with nginx-rtmp's
//! field names: `call` (`publish`, `play`, `done`), `addr` (the client's address, the PROXY
//! header's behind lb), `clientid`, `app`, `name` (the stream, without its query), `tcurl`,
//! `type=live`, then every `?key=value` the client put after the stream name. The answer:
//!
//! - 2xx: allowed — unless the body is SRS's refusal (a bare non-zero number or a JSON
//!   object with a non-zero `code`), so a service written for SRS's hooks keeps refusing;
//! - 3xx with `Location: NAME` (a plain stream name, no `/`): allowed under that name (a
//!   rename: the publisher's stream or the stream the player gets);
//! - anything else, no answer within `timeout`, or a hook that cannot be reached: refused.
//!
//! `on_done` is sent when a publish or play that its hook allowed ends; its answer is ignored
//! and it never delays the session. Refusals are counted in
//! `edgefleet_edge_refused_total{reason="hook_publish"|"hook_play"}`; a play refusal reads
//! like every other play refusal.

use bytes::Bytes;
use std::time::Duration;
use tracing::warn;

/// `[http_hooks]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HooksConfig {
    pub on_publish: Option<HookUrl>,
    pub on_play: Option<HookUrl>,
    pub on_done: Option<HookUrl>,
    pub timeout: Duration,
}

/// An `http://HOST:PORT/PATH` hook address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookUrl {
    /// `HOST:PORT`
    pub authority: String,
    /// `/PATH?QUERY`
    pub path: String,
}

impl HookUrl {
    pub fn parse(s: &str) -> Result<HookUrl, String> {
        let uri: hyper::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "{s:?}: only http:// hooks (keep the hook service on loopback or a management network)"
            ));
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("{s:?} has no host"))?;
        let authority = match auth.port_u16() {
            Some(_) => auth.as_str().to_string(),
            None => format!("{}:80", auth.host()),
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Ok(HookUrl { authority, path })
    }
}

impl std::fmt::Display for HookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// What a hook said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Allowed under this stream name.
    Rename(String),
    /// Refused; why, for the log.
    Refuse(String),
}

/// The session a hook is about.
pub struct Call<'a> {
    pub call: &'a str,
    pub addr: std::net::IpAddr,
    pub client_id: u64,
    pub app: &'a str,
    pub name: &'a str,
    pub tc_url: &'a str,
    /// The stream name's query (`key=...&x=y`), passed on as fields.
    pub query: &'a str,
}

impl Call<'_> {
    fn form(&self) -> String {
        let mut f = form_urlencoded::Serializer::new(String::new());
        f.append_pair("call", self.call)
            .append_pair("addr", &self.addr.to_string())
            .append_pair("clientid", &self.client_id.to_string())
            .append_pair("app", self.app)
            .append_pair("name", self.name)
            .append_pair("tcurl", self.tc_url)
            .append_pair("type", "live");
        for (k, v) in form_urlencoded::parse(self.query.as_bytes()) {
            if !matches!(
                &*k,
                "call" | "addr" | "clientid" | "app" | "name" | "tcurl" | "type"
            ) {
                f.append_pair(&k, &v);
            }
        }
        f.finish()
    }
}

/// Posts `call` to `url` and reads the verdict, within `timeout`.
pub async fn ask(url: &HookUrl, timeout: Duration, call: &Call<'_>) -> Verdict {
    verdict(post(url, timeout, call.form()).await, url)
}

/// One form POST to `url`, bounded by `timeout`.
async fn post(
    url: &HookUrl,
    timeout: Duration,
    form: String,
) -> Result<common::http::Answer, String> {
    let target = common::http::Target {
        addr: &url.authority,
        service: "the hook",
        hint: "see [http_hooks]",
    };
    let headers = [(
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    )];
    common::http::send(
        target,
        "POST",
        &url.path,
        &headers,
        Bytes::from(form),
        timeout,
    )
    .await
}

fn verdict(answer: Result<common::http::Answer, String>, url: &HookUrl) -> Verdict {
    match answer {
        Err(e) => Verdict::Refuse(format!("hook {url}: {e}")),
        Ok(a) if (200..300).contains(&a.status) => match srs_code(&a.body) {
            // An SRS hook service answers 200 and says no in its body.
            Some(code) if code != 0 => Verdict::Refuse(format!(
                "hook {url} answered {} with code {code} (SRS's refusal)",
                a.status
            )),
            _ => Verdict::Allow,
        },
        Ok(a) if (300..400).contains(&a.status) => match a.location.as_deref() {
            Some(n) if !n.is_empty() && !n.contains(['/', '?', '\0']) && n.len() <= 255 => {
                Verdict::Rename(n.to_string())
            }
            Some(n) => Verdict::Refuse(format!(
                "hook {url} answered {} with Location {n:?}: only a plain stream name can be a rename",
                a.status
            )),
            None => Verdict::Refuse(format!(
                "hook {url} answered {} without Location",
                a.status
            )),
        },
        Ok(a) => Verdict::Refuse(format!(
            "hook {url} answered {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body[..a.body.len().min(200)]).trim()
        )),
    }
}

/// The `code` of an SRS-style answer body: a bare number, or a JSON object's `code`.
fn srs_code(body: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if let Ok(n) = text.parse::<i64>() {
        return Some(n);
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("code")?.as_i64()
}

/// Sends `on_done` in the background (bounded by `timeout`); failures are logged.
pub fn done(url: HookUrl, timeout: Duration, call: Call<'_>) {
    let form = Call {
        call: "done",
        ..call
    }
    .form();
    tokio::spawn(async move {
        if let Err(e) = post(&url, timeout, form).await {
            warn!(hook = %url, "on_done not delivered: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, location: Option<&str>) -> Result<common::http::Answer, String> {
        Ok(common::http::Answer {
            status,
            location: location.map(str::to_string),
            body: Bytes::from_static(b"no"),
        })
    }

    #[test]
    fn urls_are_http_with_a_port() {
        let u = HookUrl::parse("http://127.0.0.1:8081/hooks/publish?site=a").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8081");
        assert_eq!(u.path, "/hooks/publish?site=a");
        assert_eq!(
            HookUrl::parse("http://auth.local").unwrap().authority,
            "auth.local:80"
        );
        assert!(HookUrl::parse("https://a/b")
            .unwrap_err()
            .contains("only http://"));
        assert!(HookUrl::parse("nope").is_err());
        assert!(HookUrl::parse("").is_err());
    }

    #[test]
    fn answers_become_verdicts_as_nginx_rtmp_reads_them() {
        let u = HookUrl::parse("http://127.0.0.1:1/x").unwrap();
        assert_eq!(verdict(answer(200, None), &u), Verdict::Allow);
        assert_eq!(verdict(answer(204, None), &u), Verdict::Allow);
        assert_eq!(
            verdict(answer(302, Some("cam2")), &u),
            Verdict::Rename("cam2".into())
        );
        for (s, l) in [
            (302, None),
            (302, Some("rtmp://other/live/x")),
            (301, Some("")),
            (403, None),
            (500, None),
            (101, None),
        ] {
            assert!(
                matches!(verdict(answer(s, l), &u), Verdict::Refuse(_)),
                "{s} {l:?}"
            );
        }
        assert!(matches!(
            verdict(Err("timed out".into()), &u),
            Verdict::Refuse(_)
        ));
        // SRS's hook answers: 200 with code 0 allows, any other code refuses.
        let srs = |body: &'static str| {
            verdict(
                Ok(common::http::Answer {
                    status: 200,
                    location: None,
                    body: Bytes::from_static(body.as_bytes()),
                }),
                &u,
            )
        };
        assert_eq!(srs("0"), Verdict::Allow);
        assert_eq!(srs("{\"code\": 0}"), Verdict::Allow);
        assert_eq!(srs("OK"), Verdict::Allow);
        assert!(matches!(srs("1"), Verdict::Refuse(_)));
        assert!(matches!(srs("{\"code\": 403}"), Verdict::Refuse(_)));
    }

    #[test]
    fn the_form_has_nginx_rtmp_fields_and_the_client_args() {
        let c = Call {
            call: "publish",
            addr: "198.18.0.7".parse().unwrap(),
            client_id: 9,
            app: "live",
            name: "cam",
            tc_url: "rtmp://edge/live",
            query: "key=s3cret&call=forged&x=a%20b",
        };
        assert_eq!(
            c.form(),
            "call=publish&addr=198.18.0.7&clientid=9&app=live&name=cam&tcurl=rtmp%3A%2F%2Fedge%2Flive&type=live&key=s3cret&x=a+b"
        );
    }
}
