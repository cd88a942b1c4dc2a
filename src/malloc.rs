//! Settles glibc's malloc before anything else runs: two arenas, and a
//! fixed threshold above which memory is mapped apart and given back when
//! freed.
//!
//! Since session 40 the binary's own allocations go to jemalloc
//! (`main.rs`); glibc's malloc serves the C code linked in, SQLite's
//! page caches and statements above all, and everything in processes that
//! keep the system allocator (the tests). What follows was measured when
//! glibc served everything.
//!
//! glibc gives every thread that meets contention on the heap an arena of
//! its own, up to eight per core, and each arena keeps what it once held.
//! Under the benchmark's long SQLite run the service's peak resident memory
//! climbed case after case to 134 MiB; with two arenas it peaked at 113 MiB,
//! at the same throughput (`docs/PERFORMANCE.md`, sessions 14 and 15).
//!
//! The password-hashing threads give their 19 MiB Argon2 areas back after
//! an idle spell (`crypto/password/threads.rs`). glibc maps a block that big apart
//! and unmaps it when freed, but only the first time: that free raises its
//! threshold to the block's size, so the next area comes from an arena's
//! heap and stays resident after its free. A fixed threshold stops that
//! raising; 4 MiB is far above what a request allocates (small blocks keep
//! coming from the arenas) and far below an area.
//!
//! glibc reads these variables once, when the process starts, and changing
//! them from inside (`mallopt`) needs the unsafe code this workspace
//! forbids. So the binary starts itself again, once, with the variables
//! set: `exec` keeps the process id, its open descriptors and its
//! arguments, so a supervisor or a shell sees one process. A value the
//! operator set wins, whatever it is: `MALLOC_ARENA_MAX=16` gives back
//! glibc's own default on two cores (eight arenas per core).

/// The variables glibc reads, and the values used where the operator set
/// none.
pub const SETTINGS: [(&str, &str); 2] = [
    ("MALLOC_ARENA_MAX", "2"),
    ("MALLOC_MMAP_THRESHOLD_", "4194304"),
];

/// Returns only when no restart is needed or it failed (then with a
/// warning on stderr: logging is not set up yet).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn settle_malloc() {
    use std::os::unix::process::CommandExt;

    let unset: Vec<(&str, &str)> = SETTINGS
        .into_iter()
        .filter(|(variable, _)| std::env::var_os(variable).is_none())
        .collect();
    if unset.is_empty() {
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
    let error = command.args(arguments).envs(unset).exec();
    eprintln!(
        "warning: could not restart with glibc's malloc settled ({error}); \
         running with glibc's defaults"
    );
}

/// Other allocators and C libraries: nothing to settle.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn settle_malloc() {}
