//! The operators' figures (`GET /admin/stats`), computed by PostgreSQL in one statement that
//! returns one JSON document (one round trip, one consistent snapshot). Days are UTC days.
//! Activity, for DAU/WAU/MAU, is a login (`last_seen_at`); for retention cohorts, any credit
//! movement (a generation, a chat turn, a purchase).

use chrono::{DateTime, Utc};
use diesel::sql_types::{Jsonb, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::vocabulary::{GenerationStatus, PaymentStatus, TurnStatus};

/// `$1` is the start of the UTC day, `$2` of the month; `$3`… are the statuses, bound by
/// [`snapshot`] in this order.
const STATS_SQL: &str = r"
WITH
u AS (
    SELECT count(*) FILTER (WHERE erased_at IS NULL) AS total,
           count(*) FILTER (WHERE created_at >= $1) AS new_today,
           count(*) FILTER (WHERE erased_at IS NULL AND last_seen_at >= $1) AS active_today,
           count(*) FILTER (WHERE erased_at IS NULL AND last_seen_at >= now() - interval '1 day') AS dau,
           count(*) FILTER (WHERE erased_at IS NULL AND last_seen_at >= now() - interval '7 days') AS wau,
           count(*) FILTER (WHERE erased_at IS NULL AND last_seen_at >= now() - interval '30 days') AS mau
    FROM users),
g AS (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE created_at >= $1) AS today,
           count(*) FILTER (WHERE status = $3) AS succeeded,
           count(*) FILTER (WHERE status = $4) AS failed,
           coalesce(count(*) FILTER (WHERE status = $4)::float8
               / nullif(count(*) FILTER (WHERE status IN ($3, $4)), 0), 0) AS failure_rate,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))
               FILTER (WHERE status = $3) AS duration_p50_secs,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))
               FILTER (WHERE status = $3) AS duration_p95_secs
    FROM generations),
credit_periods(period, since) AS (VALUES ('today', $1::timestamptz), ('all_time', '-infinity'::timestamptz)),
c AS (
    SELECT p.period,
           coalesce(sum(l.delta) FILTER (WHERE l.reason IN ('signup_bonus', 'purchase', 'subscription', 'referral_bonus', 'admin_grant')), 0) AS granted,
           coalesce(-sum(l.delta) FILTER (WHERE l.reason = 'charge'), 0) AS spent,
           coalesce(sum(l.delta) FILTER (WHERE l.reason = 'refund'), 0) AS refunded,
           coalesce(-sum(l.delta) FILTER (WHERE l.reason IN ('admin_debit', 'purchase_refund', 'referral_refund')), 0) AS taken_back,
           count(l.id) FILTER (WHERE l.reason = 'free_allowance') AS free_actions
    FROM credit_periods p LEFT JOIN credit_ledger l ON l.created_at >= p.since
    GROUP BY p.period),
revenue_periods(period, since) AS (VALUES ('today', $1::timestamptz), ('this_month', $2::timestamptz)),
revenue AS (
    SELECT r.period,
           count(p.id) AS payments,
           coalesce(sum(p.amount_minor), 0) AS gross_minor,
           coalesce(sum(p.tax_minor), 0) AS tax_minor,
           coalesce(sum(p.commission_minor), 0) AS commission_minor,
           coalesce(sum(p.net_minor), 0) AS net_minor
    FROM revenue_periods r
    LEFT JOIN payments p ON p.paid_at >= r.since AND p.status = $5 AND p.currency = 'RUB'
    GROUP BY r.period),
cohorts AS (
    SELECT id, date_trunc('week', created_at) AS week FROM users
    WHERE created_at >= date_trunc('week', now()) - interval '7 weeks'),
activity AS (
    SELECT DISTINCT l.user_id, date_trunc('week', l.created_at) AS week
    FROM credit_ledger l JOIN cohorts c ON c.id = l.user_id),
retention AS (
    SELECT c.week, count(*) AS users,
           (SELECT json_agg(n ORDER BY k) FROM (
                SELECT k, (SELECT count(*) FROM activity a JOIN cohorts c2 ON c2.id = a.user_id
                           WHERE c2.week = c.week AND a.week = c.week + make_interval(weeks => k)) AS n
                FROM generate_series(0, (extract(epoch FROM date_trunc('week', now()) - c.week) / 604800)::int) k
           ) s) AS active
    FROM cohorts c GROUP BY c.week)
SELECT jsonb_build_object(
    'users', (SELECT to_jsonb(u) FROM u),
    'generations', (SELECT jsonb_build_object(
        'total', total, 'today', today, 'failure_rate', failure_rate,
        'duration_p50_secs', duration_p50_secs, 'duration_p95_secs', duration_p95_secs,
        'by_status', (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM (SELECT status, count(*) n FROM generations GROUP BY status) x),
        'by_kind', (SELECT coalesce(jsonb_object_agg(kind, n), '{}') FROM (SELECT kind, count(*) n FROM generations GROUP BY kind) x),
        'by_zone', (SELECT coalesce(jsonb_object_agg(zone, n), '{}') FROM (SELECT zone, count(*) n FROM generations WHERE zone IS NOT NULL GROUP BY zone) x))
        FROM g),
    'credits', (SELECT jsonb_object_agg(period, to_jsonb(c) - 'period') FROM c),
    'top_users', (SELECT coalesce(jsonb_agg(t ORDER BY t.generations DESC, t.telegram_id), '[]') FROM (
        SELECT u.telegram_id, u.username, count(*) AS generations
        FROM generations g JOIN users u ON u.id = g.user_id
        GROUP BY u.id ORDER BY count(*) DESC, u.telegram_id LIMIT 10) t),
    'funnel', jsonb_build_object(
        'registered', (SELECT count(*) FROM users),
        'uploaded', (SELECT count(DISTINCT user_id) FROM uploads),
        'generated', (SELECT count(DISTINCT user_id) FROM generations),
        'paid', (SELECT count(DISTINCT user_id) FROM payments WHERE status IN ($5, $6))),
    'retention', (SELECT coalesce(jsonb_agg(jsonb_build_object('cohort_week', week::date, 'users', users, 'active', active) ORDER BY week), '[]') FROM retention),
    'erased_today', jsonb_build_object(
        'uploads', (SELECT count(*) FROM uploads WHERE deleted_at >= $1),
        'users', (SELECT count(*) FROM users WHERE erased_at >= $1)),
    'revenue', (SELECT jsonb_object_agg(period, to_jsonb(revenue) - 'period') FROM revenue),
    'assistant', (SELECT jsonb_build_object(
        'turns', count(*) FILTER (WHERE status = $7),
        'prompt_tokens', coalesce(sum(prompt_tokens), 0),
        'completion_tokens', coalesce(sum(completion_tokens), 0),
        'cost_usd_micros', coalesce(sum(cost_usd_micros), 0)) FROM chat_turns)
)";

/// The figures as one JSON document; `today` and `month` are the starts of the UTC day and
/// month.
pub async fn snapshot(
    conn: &mut AsyncPgConnection,
    today: DateTime<Utc>,
    month: DateTime<Utc>,
) -> diesel::QueryResult<serde_json::Value> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Jsonb)]
        doc: serde_json::Value,
    }
    let row: Row = diesel::sql_query(format!("SELECT doc FROM ({STATS_SQL}) AS s(doc)"))
        .bind::<Timestamptz, _>(today)
        .bind::<Timestamptz, _>(month)
        .bind::<Text, _>(GenerationStatus::Succeeded)
        .bind::<Text, _>(GenerationStatus::Failed)
        .bind::<Text, _>(PaymentStatus::Succeeded)
        .bind::<Text, _>(PaymentStatus::Refunded)
        .bind::<Text, _>(TurnStatus::Completed)
        .get_result(conn)
        .await?;
    Ok(row.doc)
}

/// Generations that failed since `since` (the bot's `/stats`: failures in the last hour).
pub async fn failed_since(
    conn: &mut AsyncPgConnection,
    since: DateTime<Utc>,
) -> diesel::QueryResult<i64> {
    use diesel::{ExpressionMethods as _, QueryDsl as _};

    use super::schema::generations;
    generations::table
        .filter(generations::status.eq(GenerationStatus::Failed))
        .filter(generations::finished_at.ge(since))
        .count()
        .get_result(conn)
        .await
}
