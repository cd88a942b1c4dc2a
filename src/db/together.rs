//! Inserts sent together with the statement after them. A transaction's
//! statements are each a round trip, and on a database server each waits
//! for the server and then for the service's next turn; the inserts of a
//! register batch (registrations, codes, links, messages) need no answer,
//! so on PostgreSQL they travel as data-modifying `WITH` clauses of the
//! statement that follows them, which does: one round trip for all. A
//! statement is checked as a whole, its foreign keys at its end, so rows
//! that refer to each other may go in one statement in any order. SQLite
//! and MySQL have no data-modifying `WITH`; there they are sent one after
//! the other, in the order given (SQLite's are calls within the process).
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, QueryResult,
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
    if db.get_database_backend() == DbBackend::Postgres {
        return db.query_all(&with_ahead(ahead, statement)).await;
    }
    for insert in &ahead {
        db.execute(insert).await?;
    }
    db.query_all(&statement).await
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
