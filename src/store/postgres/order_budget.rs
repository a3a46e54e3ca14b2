//! The cluster's new-order token buckets: one row per bucket, refilled and
//! drawn from in a single statement, so that nodes taking tokens at once
//! serialize on the row and never take more than the bucket holds. Time
//! is the database's clock, the one clock every node shares.

use sqlx::PgPool;

use crate::store::OrderToken;

/// The window the capacity refills over (Let's Encrypt's: 3 hours).
const WINDOW_SECS: f64 = 3.0 * 3600.0;

/// Takes one token from bucket `name` of `per_3h` tokens (a new bucket
/// starts full).
pub async fn take(pool: PgPool, name: String, per_3h: u32) -> Result<OrderToken, sqlx::Error> {
    let capacity = f64::from(per_3h.max(1));
    // The refilled level, as the row stands: min(capacity, tokens + elapsed * rate).
    const LEVEL: &str = "LEAST($2::float8, b.tokens + GREATEST(EXCLUDED.updated - b.updated, 0) * $2::float8 / $3::float8)";
    let sql = format!(
        "INSERT INTO mailconfd_order_buckets AS b (name, tokens, updated)
         VALUES ($1, $2::float8 - 1, extract(epoch FROM clock_timestamp())::float8)
         ON CONFLICT (name) DO UPDATE
           SET tokens = {LEVEL} - 1, updated = EXCLUDED.updated
           WHERE {LEVEL} >= 1
         RETURNING tokens"
    );
    let taken = sqlx::query(&sql)
        .bind(&name)
        .bind(capacity)
        .bind(WINDOW_SECS)
        .fetch_optional(&pool)
        .await?;
    if taken.is_some() {
        return Ok(OrderToken::Taken);
    }
    // Empty: when will one token have refilled?
    let wait: f64 = sqlx::query_scalar(
        "SELECT GREATEST(0, (1 - LEAST($2::float8, tokens
                 + GREATEST(extract(epoch FROM clock_timestamp())::float8 - updated, 0)
                   * $2::float8 / $3::float8))
               * $3::float8 / $2::float8)
         FROM mailconfd_order_buckets WHERE name = $1",
    )
    .bind(&name)
    .bind(capacity)
    .bind(WINDOW_SECS)
    .fetch_one(&pool)
    .await?;
    Ok(OrderToken::EmptyFor(wait.ceil().max(1.0) as u64))
}

/// Puts one token back into bucket `name` (never above its capacity).
pub async fn give_back(pool: PgPool, name: String, per_3h: u32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mailconfd_order_buckets SET tokens = LEAST($2::float8, tokens + 1) WHERE name = $1",
    )
    .bind(name)
    .bind(f64::from(per_3h.max(1)))
    .execute(&pool)
    .await?;
    Ok(())
}
