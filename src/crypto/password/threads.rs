//! The password-hashing threads: a shared queue of jobs, run below the
//! request threads' priority, each thread with one Argon2 area it reuses
//! while it has work and gives back when it idles.
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use rand::rngs::OsRng;

pub(super) type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    /// Each hashing thread's Argon2 memory (19 MiB), allocated at its first
    /// hash and reused until the thread idles: allocating and freeing it
    /// per hash let glibc keep more and more of it (it raises its mmap
    /// threshold after the first free), so resident memory grew past the
    /// hashing bound; kept for good, the areas stayed resident under every
    /// later load (38 MiB on two threads). See [`IDLE_BEFORE_RELEASE`].
    static ARGON2_MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// How long a hashing thread waits without a job before it gives its
/// Argon2 area back. A fresh area costs the next hash about 10 ms more
/// (mapping and zeroing 19 MiB: 24 → 34 ms on this machine): paid only
/// when hashing is far from busy, since a thread that hashes at least once
/// a second keeps its area. The area goes back to the system when freed:
/// jemalloc (the binary's allocator) gives an allocation over its
/// oversize threshold (8 MiB) extents of its own and returns them at once;
/// glibc, where it serves (the tests), maps it apart because its mmap
/// threshold is fixed below the area's size (`crate::malloc`).
pub const IDLE_BEFORE_RELEASE: Duration = Duration::from_secs(1);

/// Frees this thread's Argon2 area, if it holds one.
fn release_thread_memory(areas_held: &AtomicUsize) {
    ARGON2_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if !memory.is_empty() {
            *memory = Vec::new();
            areas_held.fetch_sub(1, Ordering::Relaxed);
        }
    });
}

/// What `hash_password` does, with the thread's own memory blocks; the
/// PHC string is the same, so `verify_password` reads it.
pub(super) fn hash_with_thread_memory(
    argon2: &Argon2<'static>,
    password: &[u8],
    areas_held: &AtomicUsize,
) -> anyhow::Result<String> {
    use argon2::password_hash::{Output, ParamsString, SaltString};
    let failed = |e: argon2::password_hash::Error| anyhow::anyhow!("Failed to hash password: {e}");
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes).map_err(failed)?;
    let params = argon2.params();
    let mut output = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    ARGON2_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.is_empty() {
            areas_held.fetch_add(1, Ordering::Relaxed);
        }
        memory.resize(params.block_count(), argon2::Block::default());
        argon2
            .hash_password_into_with_memory(password, salt_bytes, &mut output, &mut memory[..])
            .map_err(|e| anyhow::anyhow!("Failed to hash password: {e}"))
    })?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(failed)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&output).map_err(failed)?),
    };
    Ok(hash.to_string())
}

/// How far below the threads that answer requests the hashing threads
/// run, in nice steps. A hash holds a core for about 20 ms; at the same
/// priority a request that needs a fraction of a millisecond (a refusal
/// beyond the hashing queue, a verify, a register) waited for the
/// scheduler to take a core from a hash: with both cores hashing, refusals
/// had a p99 of 8.6–9.2 ms on SQLite and 7.3–11 ms on PostgreSQL, against
/// 3.3–5.1 and 5.1–6.9 ms five steps down (docs/PERFORMANCE.md, session
/// 19). Hashing still has every cycle the requests leave; against a
/// request thread that never sleeps it keeps about a quarter of a core
/// (five steps down is about a third of the weight), so a flood of cheap
/// requests slows confirms down instead of stopping them.
pub const HASHING_NICE_STEPS: i32 = 5;

/// Lowers the calling thread's priority by [`HASHING_NICE_STEPS`] from the
/// one it inherited (the process's, which an operator may have set). Linux
/// keeps the nice value per thread, so this touches no other thread.
#[cfg(target_os = "linux")]
fn yield_to_requests() {
    use rustix::process::{getpriority_process, setpriority_process};
    let lowered = getpriority_process(None)
        .and_then(|nice| setpriority_process(None, (nice + HASHING_NICE_STEPS).min(19)));
    if let Err(error) = lowered {
        tracing::warn!(%error, "Failed to lower a password-hashing thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn yield_to_requests() {}

/// `count` threads taking hashing jobs from one queue; each gives its
/// Argon2 area back after `idle` without a job, and they end when every
/// sender (every clone of `PasswordHashing`) is gone.
pub(super) fn start_workers(
    count: usize,
    idle: Duration,
    areas_held: Arc<AtomicUsize>,
) -> flume::Sender<Job> {
    let (jobs, queue) = flume::unbounded::<Job>();
    for n in 0..count.max(1) {
        let queue = queue.clone();
        let areas_held = Arc::clone(&areas_held);
        let worker = std::thread::Builder::new()
            .name(format!("password-hash-{n}"))
            .spawn(move || {
                yield_to_requests();
                loop {
                    let job = match queue.recv_timeout(idle) {
                        Ok(job) => job,
                        Err(flume::RecvTimeoutError::Timeout) => {
                            // Idle: give the area back, then wait as long
                            // as it takes.
                            release_thread_memory(&areas_held);
                            match queue.recv() {
                                Ok(job) => job,
                                Err(flume::RecvError::Disconnected) => return,
                            }
                        }
                        Err(flume::RecvTimeoutError::Disconnected) => return,
                    };
                    job();
                }
            });
        if let Err(error) = worker {
            tracing::error!(%error, "Failed to start a password-hashing thread");
        }
    }
    jobs
}
