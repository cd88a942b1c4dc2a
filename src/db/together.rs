//! Inserts sent together with the statement after them. A transaction's
//! statements are each a round trip, and on a database server each waits
//! for the server and then for the service's next turn; the inserts of a
//! register batch (registrations, codes, links, messages) need no answer,
//! so on PostgreSQL they travel as data-modifying `WITH` clauses of the
//! statement that follows them, which does: one round trip for all. A
//! statement is checked as a whole, its foreign keys at its end, so rows
//! that refer to each other may go in one statement in any order. SQLite
//! and MySQL have no data-modifying `WITH`. On SQLite they go with the
//! statement as one text of several statements, run in order by one call:
//! each call is a hand-off to the connection's worker thread and back, and
//! while a register batch waits for the answers it holds the one writer
//! (a batch's inserts were five calls). On MySQL they are sent one after
//! the other, in the order given.
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, QueryResult, Statement,
    sea_query::{Alias, CommonTableExpression, InsertStatement, WithClause},
};

/// Runs `ahead`, then `statement`, and returns the rows `statement`
/// returns (its `RETURNING`); see the module's comment.
pub async fn query_after(
    db: &impl ConnectionTrait,
    ahead: Vec<InsertStatement>,
    statement: InsertStatement,
) -> Result<Vec<QueryResult>, DbErr> {
    if ahead.is_empty() {
        return db.query_all(&statement).await;
    }
    match db.get_database_backend() {
        DbBackend::Postgres => db.query_all(&with_ahead(ahead, statement)).await,
        DbBackend::Sqlite => db.query_all_raw(one_text(ahead, &statement)).await,
        _ => {
            for insert in &ahead {
                db.execute(insert).await?;
            }
            db.query_all(&statement).await
        }
    }
}

/// Runs `inserts`, in one statement on PostgreSQL; see the module's
/// comment.
pub async fn execute_all(
    db: &impl ConnectionTrait,
    mut inserts: Vec<InsertStatement>,
) -> Result<(), DbErr> {
    match inserts.pop() {
        Some(last) => query_after(db, inserts, last).await.map(drop),
        None => Ok(()),
    }
}

/// `ahead_1; ...; statement` with the values of all, in order: SQLite
/// binds the `?` of a text's statements in turn from one list, and
/// returns the rows of all (inserts without `RETURNING` have none).
fn one_text(ahead: Vec<InsertStatement>, statement: &InsertStatement) -> Statement {
    let backend = DbBackend::Sqlite;
    let mut sql = String::new();
    let mut values = Vec::new();
    for insert in ahead.iter().chain([statement]) {
        let built = backend.build(insert);
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(&built.sql);
        values.extend(built.values.map(|v| v.0).unwrap_or_default());
    }
    Statement::from_sql_and_values(backend, sql, values)
}

/// `WITH ahead_1 AS (INSERT ...), ... <statement>`.
fn with_ahead(
    ahead: Vec<InsertStatement>,
    statement: InsertStatement,
) -> sea_orm::sea_query::WithQuery {
    let mut with = WithClause::new();
    for (i, insert) in ahead.into_iter().enumerate() {
        with.cte(
            CommonTableExpression::new()
                .query(insert)
                .table_name(Alias::new(format!("ahead_{}", i + 1)))
                .to_owned(),
        );
    }
    with.query(statement)
}

#[cfg(test)]
mod tests {
    use sea_orm::{Database, sea_query::Query};

    use super::*;

    fn insert(rows: &[(i32, &str)]) -> InsertStatement {
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new("item"))
            .columns([Alias::new("id"), Alias::new("name")]);
        for (id, name) in rows {
            insert.values_panic([(*id).into(), (*name).into()]);
        }
        insert
    }

    /// SQLite runs the inserts and the statement as one text: each
    /// statement binds its own values, and only the last one's rows
    /// come back.
    #[tokio::test]
    async fn sqlite_runs_the_inserts_and_the_statement_as_one_text() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            .await
            .unwrap();
        let mut last = insert(&[(4, "four")]);
        last.returning(Query::returning().columns([Alias::new("id"), Alias::new("name")]));
        let rows = query_after(
            &db,
            vec![insert(&[(1, "one"), (2, "two")]), insert(&[(3, "three")])],
            last,
        )
        .await
        .unwrap();
        let returned = rows
            .iter()
            .map(|row| row.try_get_by_index::<String>(1).unwrap())
            .collect::<Vec<_>>();
        assert_eq!(returned, ["four"]);
        let stored = db
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT id, name FROM item ORDER BY id",
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row.try_get_by_index::<i32>(0).unwrap(),
                    row.try_get_by_index::<String>(1).unwrap(),
                )
            })
            .collect::<Vec<_>>();
        let expected = [(1, "one"), (2, "two"), (3, "three"), (4, "four")]
            .map(|(id, name)| (id, name.to_owned()));
        assert_eq!(stored, expected);

        // A key taken in the middle fails the call with the database's own
        // error, which the callers read as a lost race.
        let refused = execute_all(
            &db,
            vec![
                insert(&[(5, "five")]),
                insert(&[(2, "again")]),
                insert(&[(6, "six")]),
            ],
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                refused.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ),
            "{refused}"
        );
    }
}
