use sea_orm_migration::prelude::*;

/// The standard SeaORM migration CLI (`up`, `down`, `status`, `fresh`, ...).
/// It reads `DATABASE_URL` like the service does.
#[tokio::main]
async fn main() {
    cli::run_cli(migration::Migrator).await;
}
