//! Tools in the edge binary: `edge publish`, `edge play`, `edge hls-load`, and `edge dr-setup` (a real
//! server behind a DR balancer).

pub mod dr_setup;
pub mod flv;
pub mod hls_load;
pub mod play;
pub mod publish;
