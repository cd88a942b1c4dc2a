//! Write transactions on every database, guarded on a Galera node, and
//! which errors are a lost race: the transaction is gone and is run again
//! whole (`service::retrying`).
use anyhow::Context;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, RuntimeErr, TransactionTrait,
};

/// A Galera node ended the transaction (another node's write set won a
/// lock it held) without the error reaching us: the transaction is gone
/// and running it whole again is the answer, as for any lost race.
#[derive(Debug, thiserror::Error)]
#[error("the cluster ended the transaction before its commit")]
pub struct TransactionEndedByCluster;

/// The savepoint a write transaction on a Galera node opens first.
const GUARD: &str = "cluster_guard";

/// Begins a write transaction. On a Galera node it also turns autocommit
/// off and opens a savepoint, the guard [`commit`] checks: a node that
/// rolls back a local transaction for a replicated one (a brute-force
/// abort) is meant to report it as 1213 to the next statement, and now and
/// then, under load, reports it to none that we see. With autocommit on,
/// every statement after that committed on its own: a register's
/// registration, SMS and quota count were stored while its request was run
/// again and refused (`REGISTER_TOO_SOON`, seen once in CI, session 12).
/// With autocommit off they wait in a new transaction, which has no guard,
/// so the commit rolls it back and the whole transaction is run again.
/// One round trip more per transaction on a Galera node, none elsewhere.
pub async fn begin(db: &DatabaseConnection, galera: bool) -> anyhow::Result<DatabaseTransaction> {
    let txn = db.begin().await.context("Failed to begin transaction")?;
    if galera {
        txn.execute_unprepared(&format!("SET autocommit = 0; SAVEPOINT {GUARD}"))
            .await
            .context("Failed to open the transaction's guard")?;
    }
    Ok(txn)
}

/// Commits `txn`. On a Galera node it first releases the guard [`begin`]
/// opened: gone, the transaction it guarded was ended by the cluster
/// (before the guard: 3 registers in 12,000 racing ones across three nodes
/// answered 200 with nothing stored, or 500), and what ran since is rolled
/// back, a lost race to run again whole.
pub async fn commit(txn: DatabaseTransaction, galera: bool) -> anyhow::Result<()> {
    if galera
        && let Err(error) = txn
            .execute_unprepared(&format!("RELEASE SAVEPOINT {GUARD}"))
            .await
    {
        if savepoint_missing(&error) {
            return Err(TransactionEndedByCluster.into());
        }
        return Err(error).context("Failed to release the transaction's guard");
    }
    txn.commit().await.context("Failed to commit transaction")?;
    Ok(())
}

/// MySQL's 1305 (`ER_SP_DOES_NOT_EXIST`): no such savepoint.
fn savepoint_missing(error: &DbErr) -> bool {
    use sea_orm::sqlx::mysql::MySqlDatabaseError;
    const NO_SUCH_SAVEPOINT: u16 = 1305;
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = error
    else {
        return false;
    };
    e.as_database_error()
        .and_then(|database| database.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|mysql| mysql.number() == NO_SUCH_SAVEPOINT)
}

/// Whether the database gave up a statement because it lost a race to a
/// concurrent transaction: PostgreSQL and MySQL SQLSTATE 40001 (a
/// serialization failure, MySQL's deadlock 1213, a Galera certification
/// conflict) or 40P01 (deadlock); SQLite BUSY (5) and its extended codes.
/// The transaction is gone; running it whole again is the answer.
pub fn lost_race(error: &DbErr) -> bool {
    // A row this transaction has just inserted cannot be read back: the
    // transaction is gone (a Galera node can end it without the error
    // reaching us; see `commit`). sea-orm's insert-and-read-back says so.
    if matches!(error, DbErr::RecordNotFound(message) if message == "Failed to find inserted item")
    {
        return true;
    }
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = error
    else {
        return false;
    };
    e.as_database_error().is_some_and(|database| {
        matches!(
            database.code().as_deref(),
            Some("40001" | "40P01" | "5" | "261" | "517")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inserted_row_that_cannot_be_read_back_is_a_lost_race_and_other_misses_are_not() {
        assert!(lost_race(&DbErr::RecordNotFound(
            "Failed to find inserted item".to_owned()
        )));
        assert!(!lost_race(&DbErr::RecordNotFound("customer 7".to_owned())));
        assert!(!lost_race(&DbErr::Custom("anything".to_owned())));
    }
}
