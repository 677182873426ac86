//! What the recipes need to know about the build host's binaries: the shared libraries a
//! dynamically linked binary loads (`ldd`) and the applets busybox provides (`busybox --list`).
//! The parsers are pure; the two functions that run the commands only add the I/O.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{Error, Result};

/// The shared objects `binary` loads, as absolute paths the way `ldd` reports them (the dynamic
/// loader included); empty for a statically linked binary.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let output = run(binary, Command::new("ldd").arg(binary))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // glibc's ldd exits 1 for a static binary and says so; a static-pie binary exits 0.
    if is_static(&stdout) || is_static(&stderr) {
        return Ok(Vec::new());
    }
    if !output.status.success() {
        return Err(inspect(
            binary,
            format!("ldd {}: {}", output.status, stderr.trim()),
        ));
    }
    parse_ldd(&stdout).map_err(|reason| inspect(binary, reason))
}

fn is_static(text: &str) -> bool {
    text.contains("not a dynamic executable") || text.contains("statically linked")
}

/// Parses `ldd` output: `name => /path (0x…)` lines give the path, a bare `/path (0x…)` line is
/// the loader, and `linux-vdso.so.1` (in the kernel, not a file) has neither.
pub fn parse_ldd(output: &str) -> std::result::Result<Vec<PathBuf>, String> {
    let mut libraries = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let resolved = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(format!("{} is not found on this host", name.trim()));
                }
                rest
            }
            None => line,
        };
        let path = resolved.split(" (").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        }
    }
    libraries.sort();
    libraries.dedup();
    Ok(libraries)
}

/// The applet names `busybox --list` prints, without `busybox` itself (the binary is there
/// under its own name already).
pub fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let output = run(busybox, Command::new(busybox).arg("--list"))?;
    if !output.status.success() {
        return Err(inspect(
            busybox,
            format!("`--list` exited with {}", output.status),
        ));
    }
    Ok(parse_applets(&String::from_utf8_lossy(&output.stdout)))
}

/// One applet name a line; anything that could not be a file name in /bin is dropped.
pub fn parse_applets(list: &str) -> Vec<String> {
    let mut applets: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/') && *a != "." && *a != "..")
        .map(str::to_string)
        .collect();
    applets.sort();
    applets.dedup();
    applets
}

fn run(binary: &Path, command: &mut Command) -> Result<Output> {
    command
        .output()
        .map_err(|e| inspect(binary, format!("running {command:?} failed: {e}")))
}

fn inspect(binary: &Path, reason: String) -> Error {
    Error::InspectBinary {
        binary: binary.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd1a3f2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f4b9c286000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f4b99b20000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f4b9993e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f4b9c2b9000)
";
        assert_eq!(
            parse_ldd(output).unwrap(),
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libm.so.6",
                "/lib64/ld-linux-x86-64.so.2",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_missing_library_is_an_error_naming_it() {
        let output = "\tlibfoo.so.1 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n";
        let err = parse_ldd(output).unwrap_err();
        assert!(err.contains("libfoo.so.1"), "{err}");
    }

    #[test]
    fn applets_skip_busybox_itself_and_odd_names() {
        assert_eq!(
            parse_applets("[\n[[\nash\nbusybox\nsh\n\nsh\nx/y\n"),
            ["[", "[[", "ash", "sh"]
        );
    }

    #[test]
    fn this_test_binary_loads_at_least_libc() {
        let me = std::env::current_exe().unwrap();
        let libs = shared_libraries(&me).unwrap();
        assert!(
            libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
    }
}
