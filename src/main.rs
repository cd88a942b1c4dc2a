use std::process::ExitCode;

fn main() -> ExitCode {
    // Before the runtime starts its threads: this may restart the process.
    customer_registration::malloc::settle_malloc();
    match tokio::runtime::Runtime::new() {
        // On the runtime's workers like every other task, not polled by
        // `block_on` on this thread: there the delivery loop, which runs in
        // the service's one future, was a third busy thread on two cores,
        // woken from sleep for each of its database answers and sends.
        Ok(runtime) => match runtime.block_on(runtime.spawn(customer_registration::cli::run())) {
            Ok(code) => code,
            Err(ended) => std::panic::resume_unwind(ended.into_panic()),
        },
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

/// jemalloc for the service's own allocations: glibc's malloc was a fifth
/// of the service's CPU under register load (its two arenas contended,
/// `src/malloc.rs`), and with jemalloc a register costs 13.5 % fewer
/// instructions, a verify 13.6 % fewer, at a peak of 100 MiB under the
/// benchmark's loads (docs/PERFORMANCE.md, session 40). C code (SQLite)
/// still allocates from glibc.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
