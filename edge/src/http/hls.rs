//! HLS over HTTP: placeholder until the packager lands.

use super::{request::Route, Answer, Request};
use crate::state::ServerState;
use std::net::SocketAddr;

pub(super) async fn answer(
    _state: &ServerState,
    _route: &Route,
    _req: &Request,
    _client: SocketAddr,
) -> Answer {
    Answer::error(404, "HLS is not served yet")
}
