//! Tools in the edge binary: `edge publish` and `edge play`.

pub mod flv;
pub mod play;
pub mod publish;
