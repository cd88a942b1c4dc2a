use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};

/// Connects and brings the schema up to date. For SQLite the file and its
/// directory are created, and WAL lets readers proceed during writes.
pub async fn connect_and_migrate(url: &str) -> anyhow::Result<DatabaseConnection> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("Failed to create database directory {}", dir.display())
            })?;
        }
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    let db = Database::connect(options)
        .await
        .context("Failed to connect to the database")?;
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA journal_mode=WAL;")
            .await
            .context("Failed to enable WAL")?;
    }
    Migrator::up(&db, None)
        .await
        .context("Failed to run database migrations")?;
    Ok(db)
}
