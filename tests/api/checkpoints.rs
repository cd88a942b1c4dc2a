//! SQLite's log is copied and started over by the serving process's
//! checkpointer (`service::checkpoints`), long before the length at which
//! SQLite would do it inside a commit.
use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use customer_registration::{
    db,
    service::{checkpoints::START_OVER_AT_PAGES, write},
};
use sea_orm::{ConnectionTrait, DbBackend};

use crate::helpers::spawn_app;

/// The pages in the log now, read from the WAL index's header in the
/// `-shm` file (`mxFrame`, the 5th 32-bit word, in the machine's byte
/// order), which reading takes no lock and copies nothing.
fn log_pages(database: &Path) -> u32 {
    let mut shm = database.as_os_str().to_owned();
    shm.push("-shm");
    let header = std::fs::read(shm).expect("the WAL index");
    u32::from_ne_bytes(header[16..20].try_into().unwrap())
}

#[tokio::test]
async fn the_log_stays_short_while_writes_never_pause() {
    let app = spawn_app().await;
    if app.core.db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    let path = db::sqlite_file(&app.core.settings.database_url).expect("an SQLite file");
    app.core
        .db
        .execute_unprepared("CREATE TABLE scratch (body BLOB)")
        .await
        .unwrap();

    // Two writers one after the other without a pause, as under load: a
    // copy beside them never finds the log copied to its end before the
    // next write, so only the pass in the writer's turn starts it over.
    // Each commit adds about ten pages (a 40 KB value).
    let writing = Arc::new(AtomicBool::new(true));
    let writers = (0..2)
        .map(|_| {
            let core = app.core.clone();
            let writing = writing.clone();
            tokio::spawn(async move {
                while writing.load(Ordering::Relaxed) {
                    let txn = write::begin(&core).await.unwrap();
                    txn.execute_unprepared("INSERT INTO scratch (body) VALUES (randomblob(40000))")
                        .await
                        .unwrap();
                    write::commit(txn).await.unwrap();
                }
            })
        })
        .collect::<Vec<_>>();
    // Until the pages written would have filled SQLite's own length
    // (16,000) more than once.
    let (mut written, mut longest, mut last) = (0, 0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while written < 40_000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let pages = log_pages(path);
        written += if pages >= last { pages - last } else { pages };
        longest = longest.max(pages);
        last = pages;
    }
    writing.store(false, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    assert!(
        written >= 40_000,
        "only {written} pages written in a minute"
    );
    assert!(
        i64::from(longest) < 4 * START_OVER_AT_PAGES,
        "the log grew to {longest} pages"
    );
}
