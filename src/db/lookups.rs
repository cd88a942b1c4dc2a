//! Single statements outside any transaction (verify's lookup), on
//! connections that go back to their pool without a round trip.
//!
//! sqlx's pool pings every connection as it takes it back, in a task of
//! its own: on SQLite a no-op command sent to the connection's worker
//! thread and answered, two more thread hand-offs for a statement that
//! needs two. For a verify, one indexed lookup, that ping was 40 % of the
//! context switches and a sixth of the CPU (docs/PERFORMANCE.md, session
//! 26). An SQLite connection is a file handle: it cannot go stale or lose
//! its server, and a statement dropped half-way is reset by its worker
//! before the next command (sqlx's `ExecuteIter` resets on drop), so the
//! ping finds nothing. Lookups on SQLite therefore run on a few connections
//! of their own, opened like the pool's, in a pool that does not ping.
//!
//! On PostgreSQL and MySQL the ping earns its round trip: it finds a
//! connection the server dropped and completes the rollback of a
//! transaction ended without a commit before anyone else gets the
//! connection. Lookups there go through the main pool like every other
//! statement.
use std::{sync::Arc, time::Instant};

use deadpool::managed::{self, Object, PoolError, RecycleResult};
use sea_orm::{
    DatabaseConnection, DbBackend, DbErr, QueryResult, RuntimeErr, Statement, Values,
    sqlx::{
        self, ConnectOptions,
        sqlite::{SqliteConnectOptions, SqliteConnection},
    },
};
use sea_query_sqlx::SqlxValues;

use crate::metrics::Metrics;

/// Connections kept for lookups on SQLite. Readers do not wait for each
/// other or for the writer in WAL mode, and a lookup holds its connection
/// for one indexed read: 2, 4 and 8 ran alike (REST verify at 64
/// connections, two rounds each: 25,500–30,300/s; docs/PERFORMANCE.md,
/// session 26). Each connection is a worker thread and up to 1 MiB of page
/// cache.
const SQLITE_LOOKUP_CONNECTIONS: usize = 4;

/// Where single-statement reads run.
#[derive(Clone)]
pub enum Lookups {
    /// The main pool (server databases).
    Pool(DatabaseConnection),
    /// SQLite: connections of their own, returned without a ping.
    Sqlite {
        connections: managed::Pool<SqliteLookupConnections>,
        metrics: Arc<Metrics>,
    },
}

impl Lookups {
    #[allow(
        clippy::expect_used,
        reason = "building fails only for timeouts set without a runtime"
    )]
    pub fn new(db: &DatabaseConnection, metrics: Arc<Metrics>) -> Self {
        if db.get_database_backend() != DbBackend::Sqlite {
            return Lookups::Pool(db.clone());
        }
        let options = db.get_sqlite_connection_pool().connect_options();
        let connections = managed::Pool::builder(SqliteLookupConnections { options })
            .max_size(SQLITE_LOOKUP_CONNECTIONS)
            .build()
            .expect("a pool without timeouts needs no runtime");
        Lookups::Sqlite {
            connections,
            metrics,
        }
    }

    /// The first row `statement` returns, if any.
    pub async fn query_one(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        use sea_orm::ConnectionTrait;
        let (connections, metrics) = match self {
            Lookups::Pool(db) => return db.query_one_raw(statement).await,
            Lookups::Sqlite {
                connections,
                metrics,
            } => (connections, metrics),
        };
        let mut connection = connections.get().await.map_err(|error| match error {
            PoolError::Backend(error) => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(error))),
            other => DbErr::Conn(RuntimeErr::Internal(other.to_string())),
        })?;
        let Statement { sql, values, .. } = statement;
        let values = values.unwrap_or(Values(Vec::new()));
        let started = Instant::now();
        let found = sqlx::query_with(sqlx::AssertSqlSafe(sql.as_str()), SqlxValues(values))
            .fetch_optional(&mut *connection)
            .await;
        super::statement_ran(metrics, &sql, started.elapsed());
        match found {
            Ok(row) => Ok(row.map(QueryResult::from)),
            Err(error) => {
                if matches!(error, sqlx::Error::WorkerCrashed | sqlx::Error::Io(_)) {
                    // Broken for good: the pool opens another in its place.
                    drop(Object::take(connection));
                }
                Err(DbErr::Query(RuntimeErr::SqlxError(Arc::new(error))))
            }
        }
    }
}

/// Opens SQLite connections with the main pool's options (the file, its
/// busy timeout and pragmas) and takes them back as they are.
pub struct SqliteLookupConnections {
    options: Arc<SqliteConnectOptions>,
}

impl managed::Manager for SqliteLookupConnections {
    type Type = SqliteConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<SqliteConnection, sqlx::Error> {
        self.options.connect().await
    }

    async fn recycle(
        &self,
        _connection: &mut SqliteConnection,
        _metrics: &managed::Metrics,
    ) -> RecycleResult<sqlx::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;

    use super::*;

    /// A lookup on SQLite reads what was committed after its connection
    /// last answered, and is counted like any statement.
    #[tokio::test]
    async fn sqlite_lookups_read_the_latest_commit_and_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("lookups.db").display()
        );
        let metrics = Arc::new(Metrics::default());
        let db = sea_orm::Database::connect(&url).await.unwrap();
        db.execute_unprepared("PRAGMA journal_mode=WAL; CREATE TABLE t (v TEXT PRIMARY KEY)")
            .await
            .unwrap();
        let lookups = Lookups::new(&db, metrics.clone());
        assert!(matches!(lookups, Lookups::Sqlite { .. }));
        let find = || {
            Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT v FROM t WHERE v = ?",
                ["a".into()],
            )
        };
        assert!(lookups.query_one(find()).await.unwrap().is_none());
        db.execute_unprepared("INSERT INTO t (v) VALUES ('a')")
            .await
            .unwrap();
        let row = lookups.query_one(find()).await.unwrap().unwrap();
        assert_eq!(row.try_get::<String>("", "v").unwrap(), "a");
        assert_eq!(metrics.db_statements(), 2);
    }
}
