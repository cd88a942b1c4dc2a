use std::process::ExitCode;

fn main() -> ExitCode {
    // Before the runtime starts its threads: this may restart the process.
    customer_registration::malloc::settle_malloc();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(customer_registration::cli::run()),
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}
