use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    customer_registration::cli::run().await
}
