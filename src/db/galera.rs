//! Finding out whether the database is a node of a MariaDB Galera cluster,
//! readying its connections, and whether it takes queries. What a write
//! transaction does differently there is in `transactions`.
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// Readies a new MySQL-family connection. On a Galera node a read can miss
/// what another node just committed; `wsrep_sync_wait = 1` (the setting
/// `galera_sync_wait`, on by default) makes each read wait until this node
/// has applied everything committed before it, so no rule decides on a
/// stale read. Servers without wsrep (plain MySQL or MariaDB) are left as
/// they are.
pub(super) async fn on_galera_node(
    conn: &mut sea_orm::sqlx::MySqlConnection,
    sync_wait: bool,
) -> Result<bool, sea_orm::sqlx::Error> {
    use sea_orm::sqlx::{Executor, Row};
    let wsrep_on = match conn.fetch_one("SELECT @@wsrep_on").await {
        Ok(row) => row.try_get::<i64, _>(0).unwrap_or(0) == 1,
        // Oracle MySQL has no such variable.
        Err(_) => false,
    };
    if wsrep_on && sync_wait {
        conn.execute("SET SESSION wsrep_sync_wait = 1").await?;
    }
    Ok(wsrep_on)
}

/// A write transaction on a Galera node turns autocommit off (see
/// [`begin`]); a connection goes back to the pool with it on again, after
/// the rollback of a transaction that ended without a commit. It runs in
/// the pool's own task, after the request has its answer; a pool of a
/// server that is no Galera node never turns autocommit off.
pub(super) async fn autocommit_again(
    conn: &mut sea_orm::sqlx::MySqlConnection,
    galera: bool,
) -> Result<bool, sea_orm::sqlx::Error> {
    use sea_orm::sqlx::Executor;
    if galera {
        conn.execute("SET autocommit = 1").await?;
    }
    Ok(true)
}

/// Whether this is a node of a MariaDB Galera cluster (`wsrep_on`).
pub async fn is_galera(db: &DatabaseConnection) -> bool {
    if db.get_database_backend() != DbBackend::MySql {
        return false;
    }
    let wsrep_on = db
        .query_one_raw(Statement::from_string(
            DbBackend::MySql,
            "SELECT CAST(@@wsrep_on AS SIGNED) AS wsrep_on",
        ))
        .await;
    // Oracle MySQL has no such variable: not a Galera node.
    let Ok(Some(row)) = wsrep_on else {
        return false;
    };
    row.try_get::<i64>("", "wsrep_on").unwrap_or(0) == 1
}

/// Whether this Galera node is part of its cluster's primary component and
/// takes queries (`wsrep_ready`). A node cut off from the others still
/// answers pings; every other statement it refuses.
pub async fn cluster_ready(db: &DatabaseConnection) -> bool {
    let status = db
        .query_one_raw(Statement::from_string(
            DbBackend::MySql,
            "SHOW STATUS LIKE 'wsrep_ready'",
        ))
        .await;
    let Ok(Some(row)) = status else {
        return false;
    };
    row.try_get::<String>("", "Value")
        .is_ok_and(|value| value.eq_ignore_ascii_case("ON"))
}
