//! The shared database's tables, created and migrated by mailconfd itself.
//!
//! Versioned: `mailconfd_schema` lists the versions applied. Every node runs
//! `migrate` at start (and after an outage, before its first write); the
//! whole check-and-apply runs in one transaction under a transaction-scoped
//! advisory lock, so nodes starting at once apply each version exactly once
//! and the others see it done. A migration is only ever appended, never
//! edited: nodes of an older build keep working on a newer schema as long as
//! migrations only add.

use sqlx::PgPool;

/// `pg_advisory_xact_lock` key: "mailconf" in ASCII, so it does not collide
/// with another application's small integers in a shared database.
const MIGRATION_LOCK: i64 = 0x6d61_696c_636f_6e66;

/// Version n is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[
    // 1: everything a node shares with the others.
    r"
    CREATE TABLE mailconfd_accounts (
        directory_url text PRIMARY KEY,
        credentials bytea NOT NULL,
        encrypted boolean NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE TABLE mailconfd_certs (
        domain text NOT NULL,
        issuer text NOT NULL,
        names text NOT NULL,
        chain_pem text NOT NULL,
        key bytea NOT NULL,
        key_encrypted boolean NOT NULL,
        not_before bigint NOT NULL,
        not_after bigint NOT NULL,
        issuer_name text NOT NULL,
        node text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        PRIMARY KEY (domain, issuer)
    );
    CREATE INDEX mailconfd_certs_updated_at ON mailconfd_certs (updated_at);
    CREATE TABLE mailconfd_status (
        domain text NOT NULL,
        issuer text NOT NULL,
        status text NOT NULL,
        PRIMARY KEY (domain, issuer)
    );
    CREATE TABLE mailconfd_blobs (
        name text PRIMARY KEY,
        value bytea NOT NULL,
        encrypted boolean NOT NULL
    );
    CREATE TABLE mailconfd_leases (
        domain text NOT NULL,
        issuer text NOT NULL,
        owner text NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (domain, issuer)
    );
    CREATE TABLE mailconfd_challenges (
        kind text NOT NULL,
        name text NOT NULL,
        token text NOT NULL,
        value text NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (kind, name, token)
    );
    ",
    // 2: the order a lease holder placed, for the node that takes over.
    r"
    ALTER TABLE mailconfd_leases ADD COLUMN order_url text;
    ALTER TABLE mailconfd_leases ADD COLUMN order_names text;
    ",
    // 3: the new-order token buckets all nodes draw from (order_budget.rs);
    // `updated` in seconds since the epoch, by the database's clock.
    r"
    CREATE TABLE mailconfd_order_buckets (
        name text PRIMARY KEY,
        tokens double precision NOT NULL,
        updated double precision NOT NULL
    );
    ",
];

/// The schema version this build needs.
pub const CURRENT: i32 = MIGRATIONS.len() as i32;

/// Applies every missing migration; returns the versions it applied.
///
/// # Errors
/// The database refused (or a newer node's schema is unknown to this build:
/// that is allowed, only additions are ever made).
pub async fn migrate(pool: PgPool) -> Result<Vec<i32>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(tx.as_mut())
        .await?;
    // Checked first: IF NOT EXISTS alone makes the server send a notice
    // that sqlx logs at info level on every start of every node.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('mailconfd_schema') IS NOT NULL")
        .fetch_one(tx.as_mut())
        .await?;
    if !exists {
        sqlx::query(
            "CREATE TABLE mailconfd_schema (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .execute(tx.as_mut())
        .await?;
    }
    let have: Option<i32> = sqlx::query_scalar("SELECT max(version) FROM mailconfd_schema")
        .fetch_one(tx.as_mut())
        .await?;
    let have = have.unwrap_or(0);
    let mut applied = Vec::new();
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i32 + 1;
        if version <= have {
            continue;
        }
        // A &str runs as a simple query: several statements at once.
        sqlx::Executor::execute(tx.as_mut(), *sql).await?;
        sqlx::query("INSERT INTO mailconfd_schema (version) VALUES ($1)")
            .bind(version)
            .execute(tx.as_mut())
            .await?;
        applied.push(version);
    }
    tx.commit().await?;
    Ok(applied)
}
