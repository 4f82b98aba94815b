//! Runs one check command (a `vrrp_script`, a `misc_check`) with a deadline, as keepalived
//! does: the words of the configured line (see `config::track::split_words`) are the program
//! and its arguments, executed directly — no shell. stdin, stdout and stderr go to
//! /dev/null: only the exit status counts, so a script printing garbage is just its status.
//! The command runs in its own process group; at the deadline the whole group gets SIGKILL
//! (a `sh -c 'sleep 100'` leaves no sleeper behind) and the run counts as failed.
//!
//! Never panics: a program that does not exist or cannot run is an [`Exit::CannotStart`]
//! with the OS's reason, which the callers treat as a failure.

use std::time::Duration;
use tokio::process::Command;

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    TimedOut(Duration),
    CannotStart(String),
}

impl Exit {
    pub fn success(&self) -> bool {
        *self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::TimedOut(t) => write!(f, "timed out after {t:?} (killed)"),
            Exit::CannotStart(e) => write!(f, "cannot start: {e}"),
        }
    }
}

/// Runs `argv` and waits for it at most `timeout`.
pub async fn run(argv: &[String], timeout: Duration) -> Exit {
    let Some((prog, args)) = argv.split_first() else {
        return Exit::CannotStart("no command".into());
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Exit::CannotStart(format!("{prog}: {e}")),
    };
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(c), _) => Exit::Code(c),
                (None, Some(s)) => Exit::Signal(s),
                (None, None) => Exit::CannotStart("no exit status".into()),
            }
        }
        Ok(Err(e)) => Exit::CannotStart(format!("{prog}: waiting for it: {e}")),
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill().await;
            Exit::TimedOut(timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[tokio::test]
    async fn exit_codes_timeouts_and_missing_programs() {
        let t = Duration::from_secs(5);
        assert_eq!(
            run(&words(&["/bin/sh", "-c", "exit 0"]), t).await,
            Exit::Code(0)
        );
        assert_eq!(
            run(&words(&["/bin/sh", "-c", "exit 7"]), t).await,
            Exit::Code(7)
        );
        // Garbage on stdout/stderr changes nothing.
        assert_eq!(
            run(
                &words(&["/bin/sh", "-c", "head -c 100000 /dev/urandom; exit 0"]),
                t
            )
            .await,
            Exit::Code(0)
        );
        let started = std::time::Instant::now();
        let e = run(
            &words(&["/bin/sh", "-c", "sleep 30"]),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(e, Exit::TimedOut(Duration::from_millis(200)));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(
            run(&words(&["/nonexistent/chk"]), t).await,
            Exit::CannotStart(_)
        ));
        // Not executable.
        let plain = std::env::temp_dir().join(format!("lb-script-plain-{}", std::process::id()));
        std::fs::write(&plain, "exit 0").unwrap();
        let e = run(&[plain.display().to_string()], t).await;
        assert!(
            matches!(&e, Exit::CannotStart(why) if why.contains("ermission")),
            "{e:?}"
        );
        let _ = std::fs::remove_file(&plain);
        assert!(matches!(run(&[], t).await, Exit::CannotStart(_)));
    }
}
