//! Caps glibc's malloc arenas before anything else runs.
//!
//! glibc gives every thread that meets contention on the heap an arena of
//! its own, up to eight per core, and each arena keeps what it once held.
//! Under the benchmark's long SQLite run the service's peak resident memory
//! climbed case after case to 134 MiB; with two arenas it peaked at 113 MiB,
//! at the same throughput (`docs/PERFORMANCE.md`, sessions 14 and 15).
//!
//! glibc reads `MALLOC_ARENA_MAX` once, when the process starts, and
//! changing it from inside (`mallopt`) needs the unsafe code this workspace
//! forbids. So the binary starts itself again, once, with the variable set:
//! `exec` keeps the process id, its open descriptors and its arguments, so a
//! supervisor or a shell sees one process. A value the operator set wins,
//! whatever it is: `MALLOC_ARENA_MAX=16` gives back glibc's own default on
//! two cores (eight arenas per core).

/// Returns only when no restart is needed or it failed (then with a
/// warning on stderr: logging is not set up yet).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn cap_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    // The variable glibc reads, and the cap used when the operator set none.
    const VARIABLE: &str = "MALLOC_ARENA_MAX";
    const DEFAULT_CAP: &str = "2";

    if std::env::var_os(VARIABLE).is_some() {
        return;
    }
    let Ok(binary) = std::env::current_exe() else {
        return;
    };
    let mut arguments = std::env::args_os();
    let mut command = std::process::Command::new(binary);
    if let Some(name) = arguments.next() {
        command.arg0(name);
    }
    let error = command.args(arguments).env(VARIABLE, DEFAULT_CAP).exec();
    eprintln!(
        "warning: could not restart with {VARIABLE}={DEFAULT_CAP} ({error}); \
         running with glibc's default malloc arenas"
    );
}

/// Other allocators and C libraries: nothing to cap.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn cap_malloc_arenas() {}
