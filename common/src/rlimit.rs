//! The open-files limit: servers raise their soft limit to the hard one at start (as HAProxy
//! does), so a flood of connections meets the server's own caps, not EMFILE at accept.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns `(before, now)` soft limits,
/// or `None` when the limits cannot be read.
pub fn raise_nofile_to_hard() -> Option<(u64, u64)> {
    raise_nofile(u64::MAX)
}

/// Raises the soft RLIMIT_NOFILE to `want` (at most the hard limit); never lowers it.
/// Returns `(before, now)` soft limits.
pub fn raise_nofile(want: u64) -> Option<(u64, u64)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let target = want.min(hard);
    if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        return Some((soft, target));
    }
    Some((soft, soft))
}
