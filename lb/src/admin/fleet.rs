//! The fleet page (`GET /`, one static page embedded in the binary) and its data
//! (`GET /fleet`): what each real server's edge API says (viewers, streams, bandwidth),
//! fetched by lb itself — the edges' APIs may stay on their own loopback or management
//! addresses, and the browser talks to this admin listener only.
//!
//! The edges are read every [`REFRESH`] while someone looked at the page in the last
//! [`WATCHED`]; nobody watching costs nothing.

use crate::balancer::Balancer;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The page: HTML, CSS and JS in one file, no build chain.
pub const PAGE: &str = include_str!("fleet.html");
pub const REFRESH: Duration = Duration::from_secs(2);
pub const WATCHED: Duration = Duration::from_secs(30);
const EDGE_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Default)]
pub struct Fleet {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    asked: Option<Instant>,
    doc: Option<Value>,
}

impl Fleet {
    /// The last document (`{"edges": {...}}`), and a note that someone is watching.
    pub fn doc(&self) -> Value {
        let mut s = self.inner.lock().unwrap();
        s.asked = Some(Instant::now());
        s.doc.clone().unwrap_or_else(|| json!({ "edges": {} }))
    }

    fn watched(&self) -> bool {
        self.inner
            .lock()
            .unwrap()
            .asked
            .is_some_and(|t| t.elapsed() < WATCHED)
    }
}

/// Reads every real server's edge API while the page is watched; runs until aborted.
pub async fn refresh(balancer: Arc<Balancer>, fleet: Arc<Fleet>) {
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !fleet.watched() {
            continue;
        }
        let mut targets: Vec<(String, String)> = Vec::new();
        for vs in balancer.virtual_servers() {
            for rs in &vs.cfg.read().unwrap().real_servers {
                let key = rs.address.to_string();
                if !targets.iter().any(|(k, _)| *k == key) {
                    targets.push((key, rs.api.to_string()));
                }
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (rs, api) in targets {
            tasks.spawn(async move {
                let got = tokio::time::timeout(
                    EDGE_TIMEOUT,
                    common::http::get(
                        common::http::Target {
                            addr: &api,
                            service: "the edge API",
                            hint: "set [api] on the edge, or the real server's api key",
                        },
                        "/api/v1/streams?count=1000",
                        &[],
                    ),
                )
                .await
                .unwrap_or_else(|_| Err(format!("{api}: no answer within 1.5 s")));
                (rs, api, got)
            });
        }
        let mut edges = Map::new();
        while let Some(Ok((rs, api, got))) = tasks.join_next().await {
            edges.insert(rs, summarize(&api, got));
        }
        fleet.inner.lock().unwrap().doc = Some(json!({ "edges": edges }));
    }
}

/// One edge's entry from its `/api/v1/streams` answer.
fn summarize(api: &str, got: Result<bytes::Bytes, String>) -> Value {
    let parsed = got.and_then(|b| {
        serde_json::from_slice::<Value>(&b).map_err(|e| format!("{api}: not JSON: {e}"))
    });
    match parsed {
        Err(e) => json!({ "api": api, "error": e }),
        Ok(v) => {
            let streams: Vec<Value> = v["streams"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|s| {
                    json!({
                        "id": s["id"],
                        "clients": s["clients"],
                        "kbps": s["kbps"],
                    })
                })
                .collect();
            let viewers: u64 = streams.iter().filter_map(|s| s["clients"].as_u64()).sum();
            let send_kbps: u64 = v["streams"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["kbps"]["send_30s"].as_u64())
                .sum();
            json!({ "api": api, "viewers": viewers, "send_kbps": send_kbps, "streams": streams })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edge_answer_is_summarized_and_errors_are_kept() {
        let body = br#"{"code":0,"streams":[{"id":"live/a","clients":3,"kbps":{"recv_30s":2000,"send_30s":6000}},{"id":"live/b","clients":1,"kbps":{"recv_30s":1000,"send_30s":1000}}]}"#;
        let v = summarize("198.18.0.2:1985", Ok(bytes::Bytes::from_static(body)));
        assert_eq!(v["viewers"], 4);
        assert_eq!(v["send_kbps"], 7000);
        assert_eq!(v["streams"][0]["id"], "live/a");
        let v = summarize("x", Ok(bytes::Bytes::from_static(b"garbage")));
        assert!(v["error"].as_str().unwrap().contains("not JSON"));
        let v = summarize("x", Err("cannot reach x".into()));
        assert_eq!(v["error"], "cannot reach x");
    }

    #[test]
    fn the_page_reads_status_and_fleet() {
        assert!(PAGE.contains("fetch(\"status\")") && PAGE.contains("fetch(\"fleet\")"));
    }
}
