//! EdgeFleet's build tasks (the xtask convention: `cargo xtask TASK`, aliased in
//! `.cargo/config.toml`).
//!
//! `cargo xtask dist` makes, in `TARGET_DIR/dist/`:
//! - `lb` and `edge`: release binaries (profile `release-dist`: no debug info) linked against glibc
//!   2.17 or older, so that they start on EL7 and everything newer. cargo-zigbuild links them
//!   with zig (from PyPI: `pip install ziglang`) against glibc 2.17's symbol versions; the
//!   highest `GLIBC_x.y` each binary needs is read back with `objdump -T` and checked.
//! - `man/lb.1`, `man/edge.1` and a page per subcommand (`lb-status.1`, ...): rendered with clap_mangen from the same clap definitions the
//!   binaries parse with (`lb::cli::cli()`, `edge::cli::cli()`).
//! - `edgefleet-lb_*.deb`, `edgefleet-edge_*.deb` (cargo-deb) and the two `.rpm`
//!   (cargo-generate-rpm), from `[package.metadata.deb]` / `[package.metadata.generate-rpm]`
//!   in `lb/Cargo.toml` and `edge/Cargo.toml`; maintainer scripts in `dist/`.
//!
//! Missing tools are installed with the command printed first (cargo install / pip install,
//! versions pinned); `--no-install` fails instead, naming the tool and the command.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// The Rust target of the packages; cargo-zigbuild's `.2.17` suffix picks the glibc to link
/// against, and the files land under `TARGET_DIR/TARGET/PROFILE/` as for a plain build.
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// EL7's glibc: the oldest the seeds' hosts carry.
const GLIBC_MAX: (u32, u32) = (2, 17);
const PROFILE: &str = "release-dist";
const BINS: [&str; 2] = ["lb", "edge"];

/// A tool the task runs: how to tell it is there, and how to install it.
struct Tool {
    name: &'static str,
    probe: &'static [&'static str],
    install: Option<&'static [&'static str]>,
    /// What to tell when it cannot be installed from here.
    hint: &'static str,
}

const TOOLS: [Tool; 5] = [
    Tool {
        name: "cargo-zigbuild",
        probe: &["cargo-zigbuild", "--version"],
        install: Some(&[
            "cargo",
            "install",
            "cargo-zigbuild",
            "--version",
            "0.24.1",
            "--locked",
        ]),
        hint: "cargo install cargo-zigbuild --version 0.24.1 --locked",
    },
    Tool {
        name: "zig",
        probe: &["python3", "-m", "ziglang", "version"],
        install: Some(&["python3", "-m", "pip", "install", "ziglang==0.17.1"]),
        hint: "python3 -m pip install ziglang==0.17.1 (or a zig on PATH)",
    },
    Tool {
        name: "cargo-deb",
        probe: &["cargo", "deb", "--version"],
        install: Some(&[
            "cargo",
            "install",
            "cargo-deb",
            "--version",
            "3.8.0",
            "--locked",
        ]),
        hint: "cargo install cargo-deb --version 3.8.0 --locked",
    },
    Tool {
        name: "cargo-generate-rpm",
        probe: &["cargo", "generate-rpm", "--version"],
        install: Some(&[
            "cargo",
            "install",
            "cargo-generate-rpm",
            "--version",
            "0.21.1",
            "--locked",
        ]),
        hint: "cargo install cargo-generate-rpm --version 0.21.1 --locked",
    },
    Tool {
        name: "objdump",
        probe: &["objdump", "--version"],
        install: None,
        hint: "apt-get install binutils (dnf install binutils)",
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dist") => dist(&args[1..]),
        Some("man") => man(args.get(1).map(PathBuf::from)),
        _ => {
            eprintln!(
                "usage: cargo xtask dist [--no-install]   portable binaries, man pages, .deb and .rpm in TARGET_DIR/dist/\n       cargo xtask man [DIR]            the man pages only (default DIR: TARGET_DIR/dist/man)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ sits in the workspace root")
        .to_path_buf()
}

/// Cargo's target directory (CARGO_TARGET_DIR, config, or `target/`), as cargo itself says.
fn target_dir() -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(workspace_root())
        .stderr(Stdio::inherit())
        .output()
        .context("cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata: unreadable JSON")?;
    let dir = v["target_directory"]
        .as_str()
        .context("cargo metadata: no target_directory")?;
    Ok(PathBuf::from(dir))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs a command from the workspace root, its output shown; fails naming it.
fn run(argv: &[&str]) -> Result<()> {
    eprintln!("xtask: $ {}", argv.join(" "));
    let program = if argv[0] == "cargo" {
        cargo()
    } else {
        argv[0].to_string()
    };
    let status = Command::new(&program)
        .args(&argv[1..])
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot run {}", argv[0]))?;
    if !status.success() {
        bail!("`{}` failed ({status})", argv.join(" "));
    }
    Ok(())
}

fn present(probe: &[&str]) -> bool {
    let program = if probe[0] == "cargo" {
        cargo()
    } else {
        probe[0].to_string()
    };
    Command::new(program)
        .args(&probe[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn ensure_tools(install: bool) -> Result<()> {
    for tool in &TOOLS {
        // cargo-zigbuild also takes a zig on PATH.
        if present(tool.probe) || (tool.name == "zig" && present(&["zig", "version"])) {
            continue;
        }
        match tool.install {
            Some(cmd) if install => {
                eprintln!("xtask: {} is missing: installing it", tool.name);
                run(cmd).with_context(|| {
                    format!(
                        "installing {} failed; install it by hand: {}",
                        tool.name, tool.hint
                    )
                })?;
            }
            _ => bail!(
                "{} is missing (needed by cargo xtask dist): {}",
                tool.name,
                tool.hint
            ),
        }
    }
    Ok(())
}

/// Renders `lb.1`, `edge.1` and a page per subcommand (`lb-status.1`, ..., which the
/// SUBCOMMANDS section of the main page names) into `dir`.
fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    fn render(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            render(sub.clone(), dir, written)?;
        }
        let man = clap_mangen::Man::new(cmd)
            .section("1")
            .manual("EdgeFleet")
            .source(format!("EdgeFleet {}", env!("CARGO_PKG_VERSION")));
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page)
            .with_context(|| format!("rendering {}", path.display()))?;
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        Ok(())
    }
    std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let mut written = Vec::new();
    for cmd in [lb::cli::cli(), edge::cli::cli()] {
        // As clap_mangen::generate_to: no page for the implicit `help` subcommand, and the
        // subcommands named `lb-status` etc. (build() propagates the names).
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        render(cmd, dir, &mut written)?;
    }
    Ok(written)
}

fn man(dir: Option<PathBuf>) -> Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => target_dir()?.join("dist").join("man"),
    };
    for p in write_man_pages(&dir)? {
        println!("{}", p.display());
    }
    Ok(())
}

/// The highest `GLIBC_x.y` symbol version `bin` needs (`objdump -T`), if any.
fn glibc_needed(bin: &Path) -> Result<Option<(u32, u32)>> {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(bin)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run objdump (apt-get install binutils)")?;
    if !out.status.success() {
        bail!("objdump -T {} failed ({})", bin.display(), out.status);
    }
    Ok(max_glibc(&String::from_utf8_lossy(&out.stdout)))
}

/// The highest `GLIBC_x.y[.z]` named in objdump's dynamic symbol table (x.y compared).
fn max_glibc(objdump: &str) -> Option<(u32, u32)> {
    objdump
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut it = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .max()
}

fn size_mb(path: &Path) -> Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .len();
    Ok(format!("{:.1} MB", len as f64 / 1e6))
}

fn dist(args: &[String]) -> Result<()> {
    let install = match args {
        [] => true,
        [a] if a == "--no-install" => false,
        _ => bail!("cargo xtask dist takes only --no-install, got {args:?}"),
    };
    let started = Instant::now();
    ensure_tools(install)?;
    let target_dir = target_dir()?;
    let out = target_dir.join("dist");
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("rm -r {}", out.display()))?;
    }
    std::fs::create_dir_all(&out).with_context(|| format!("mkdir {}", out.display()))?;

    // The binaries, against glibc 2.17.
    let zig_target = format!("{TARGET}.{}.{}", GLIBC_MAX.0, GLIBC_MAX.1);
    let mut build = vec![
        "cargo",
        "zigbuild",
        "--locked",
        "--profile",
        PROFILE,
        "--target",
        &zig_target,
    ];
    for b in BINS {
        build.extend(["-p", b, "--bin", b]);
    }
    run(&build)?;
    let built = target_dir.join(TARGET).join(PROFILE);

    // The man pages, where the packages' metadata takes them (`target/release/` in an asset
    // source is the build's own output directory for cargo-deb and cargo-generate-rpm).
    // Gzipped there, as Debian policy and rpmbuild's brp-compress have them installed (`-n`:
    // no name or time stamp in the file, so a rebuild makes the same package).
    let man_dir = built.join("man");
    if man_dir.exists() {
        std::fs::remove_dir_all(&man_dir)
            .with_context(|| format!("rm -r {}", man_dir.display()))?;
    }
    for page in write_man_pages(&man_dir)? {
        run(&[
            "gzip",
            "-9nf",
            page.to_str().context("target directory is not UTF-8")?,
        ])?;
    }
    write_man_pages(&out.join("man"))?;

    let mut report = Vec::new();
    for b in BINS {
        let bin = built.join(b);
        match glibc_needed(&bin)? {
            Some(v) if v > GLIBC_MAX => bail!(
                "{b} needs GLIBC_{}.{}, newer than {}.{} (EL7): it would not start there",
                v.0,
                v.1,
                GLIBC_MAX.0,
                GLIBC_MAX.1
            ),
            Some(v) => report.push(format!(
                "{b}: needs GLIBC_{}.{} at most (limit {}.{}), {}",
                v.0,
                v.1,
                GLIBC_MAX.0,
                GLIBC_MAX.1,
                size_mb(&bin)?
            )),
            None => report.push(format!("{b}: needs no versioned glibc symbol")),
        }
        std::fs::copy(&bin, out.join(b)).with_context(|| format!("copy {}", bin.display()))?;
    }

    // The packages, from the binaries just built (no second build, no second strip).
    let out_s = out.to_str().context("target directory is not UTF-8")?;
    for b in BINS {
        run(&[
            "cargo",
            "deb",
            "--package",
            b,
            "--no-build",
            "--no-strip",
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            "--output",
            out_s,
        ])?;
        run(&[
            "cargo",
            "generate-rpm",
            "--package",
            b,
            "--target",
            TARGET,
            "--profile",
            PROFILE,
            // EL7's rpm (4.11) reads gzip payloads, not the default zstd.
            "--payload-compress",
            "gzip",
            "--output",
            out_s,
        ])?;
    }

    for line in &report {
        println!("{line}");
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for f in files {
        println!("{}: {}", f.display(), size_mb(&f)?);
    }
    println!(
        "dist: done in {:.0} s, in {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::max_glibc;

    #[test]
    fn highest_glibc_version_of_objdump_output() {
        let text = "\
0000000000000000      DF *UND*	0000000000000000 (GLIBC_2.2.5) memcpy
0000000000000000      DF *UND*	0000000000000000  GLIBC_2.17  clock_gettime
0000000000000000      DF *UND*	0000000000000000 (GLIBC_2.3.4) __memcpy_chk
0000000000000000  w   DF *UND*	0000000000000000 (GLIBC_PRIVATE) _dl_x
";
        assert_eq!(max_glibc(text), Some((2, 17)));
        assert_eq!(max_glibc("no versions here"), None);
        assert_eq!(max_glibc("(GLIBC_2.34) f\n(GLIBC_2.9) g"), Some((2, 34)));
    }
}
