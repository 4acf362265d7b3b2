//! The data layer: pools, embedded migrations, and one query module per table.
//! Query functions take `&mut AsyncPgConnection`; the caller owns the transaction.

pub mod admin_audit;
pub mod bot;
pub mod chat_sessions;
pub mod chat_turns;
pub mod generations;
pub mod ledger;
pub mod models;
pub mod notices;
pub mod payments;
pub mod privacy;
pub mod products;
pub mod referrals;
pub mod sandbox_payments;
pub mod schema;
pub mod stats;
pub mod uploads;
pub mod users;

use std::time::Duration;

use anyhow::Context;
use diesel::RunQueryDsl as _;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub type PgPool = Pool<AsyncPgConnection>;
pub type PgConn = Object<AsyncPgConnection>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Key of the advisory lock that serialises concurrent `migrate` runs (API and workers starting together).
const MIGRATION_LOCK_KEY: i64 = 0x0061_7465_6c69_6572;

/// Connections are handed out again without a test query (`Fast`): a closed connection is
/// still never reused (the pool drops it when the client reports it closed, or its transaction
/// state broken), and a request saves a round trip per checkout.
pub fn build_pool(database_url: &str, max_size: usize) -> anyhow::Result<PgPool> {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_redis::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .context("building the database pool")
}

/// Runs the embedded migrations that have not run yet; returns their names.
pub async fn run_migrations(database_url: &str) -> anyhow::Result<Vec<String>> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        use diesel::Connection as _;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .context("connecting to the database to migrate")?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
            .execute(&mut conn)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("running migrations: {e}"))?
            .iter()
            .map(|v| v.to_string())
            .collect();
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
            .execute(&mut conn)?;
        Ok(applied)
    })
    .await
    .context("migration task panicked")?
}

/// Keeps a statement prepared on its connection (`query.prepared()`): one round trip per run
/// instead of two (prepare, then execute), and no parsing or planning from scratch.
///
/// Diesel keeps its DSL's SELECTs and simple INSERTs prepared, but never raw SQL, UPDATEs or
/// INSERTs of structs with optional fields, because their SQL text may differ from one run to
/// the next. A `Prepared` statement is kept by its SQL text (and bind types), so that is correct
/// for any query; use it where the text takes a bounded number of forms (not with IN lists or
/// SQL built at run time), each form being one statement per connection. Raw SQL whose result
/// columns are `*` would fail after a migration adds a column ("cached plan must not change
/// result type"): name its columns.
pub trait Prepare: Sized {
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q: QueryFragment<Pg>> Prepare for Q {}

/// See [`Prepare`].
#[derive(Debug, Clone, Copy)]
pub struct Prepared<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        self.0.walk_ast(pass)
    }

    /// Whatever the inner query says: kept by its text, it cannot be run with another's plan.
    fn is_safe_to_cache_prepared(&self, _: &Pg) -> diesel::QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    // The statement cache keys such queries by their SQL text and bind types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}
