//! SQLite's writes in this process's writer turn run on one connection of
//! their own (`db::sqlite_writer`), so its page cache outlives each
//! transaction: a connection that begins after another one committed
//! throws its cache away.
use customer_registration::service::write;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

use crate::helpers::spawn_app;

#[tokio::test]
async fn writes_in_the_turn_run_on_one_connection_with_a_larger_cache() {
    let app = spawn_app().await;
    if app.core.db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    // A temporary table lives in the connection that made it: later write
    // transactions see it only if they run on that connection.
    let txn = write::begin(&app.core).await.unwrap();
    txn.execute_unprepared("CREATE TEMP TABLE made_here (n INTEGER)")
        .await
        .unwrap();
    write::commit(txn).await.unwrap();
    for n in 0..8 {
        // The pool's connections are busy with other work meanwhile: one
        // is held here, whichever the pool hands out first.
        let elsewhere = app.core.db.begin().await.unwrap();
        elsewhere.execute_unprepared("SELECT 1").await.unwrap();
        let txn = write::begin(&app.core).await.unwrap();
        txn.execute_unprepared(&format!("INSERT INTO temp.made_here (n) VALUES ({n})"))
            .await
            .unwrap_or_else(|error| panic!("write {n} ran on another connection: {error}"));
        write::commit(txn).await.unwrap();
        elsewhere.rollback().await.unwrap();
    }

    let txn = write::begin(&app.core).await.unwrap();
    let cache = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA cache_size",
        ))
        .await
        .unwrap()
        .unwrap();
    let written = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT count(*) AS n FROM temp.made_here",
        ))
        .await
        .unwrap()
        .unwrap();
    write::rollback(txn).await.unwrap();
    // Negative: KiB. The pool's connections keep 1 MiB.
    assert_eq!(cache.try_get_by_index::<i64>(0).unwrap(), -8192);
    assert_eq!(written.try_get::<i64>("", "n").unwrap(), 8);
}
