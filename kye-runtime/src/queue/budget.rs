//! Rate limits across the fleet: a budget row per host in `_kye_queue_rates` (a token bucket
//! kept in the database) that every worker draws small grants from, and the pause a `429`
//! with `Retry-After` imposes, seen by every worker at its next grant. Installed in the
//! runtime's HTTP limiter as its [`FleetBudget`] while a worker works.

use std::sync::Mutex;
use std::time::Duration;

use crate::http::rate::{FleetBudget, FleetGrant, Rate};
use crate::store::{Conn, PgSpec, StoreError};

/// The budget of a PostgreSQL store's workers.
pub(super) struct PgBudget {
    conn: Mutex<Conn>,
}

impl std::fmt::Debug for PgBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgBudget")
    }
}

/// How long a worker waits before asking again when the database cannot be asked.
const UNANSWERED: Duration = Duration::from_secs(1);

impl PgBudget {
    pub(super) fn open(spec: &PgSpec) -> Result<PgBudget, StoreError> {
        Ok(PgBudget {
            conn: Mutex::new(Conn::open(spec)?),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl FleetBudget for PgBudget {
    fn grant(&self, host: &str, rate: Option<Rate>, want: f64) -> FleetGrant {
        let host = host.to_string();
        let answer = self.conn().run(move |s| {
            let Some(rate) = rate else {
                let paused: Option<f64> = s
                    .client
                    .query_opt(
                        "SELECT greatest(extract(epoch FROM paused_until - clock_timestamp())::float8, 0) \
                         FROM _kye_queue_rates WHERE host = $1",
                        &[&host],
                    )?
                    .and_then(|r| r.get(0));
                return Ok((0.0, 0.0, paused.unwrap_or(0.0)));
            };
            let burst = rate.burst.max(1.0);
            s.client.execute(
                "INSERT INTO _kye_queue_rates (host, tokens, updated_at) \
                 VALUES ($1, $2, clock_timestamp()) ON CONFLICT (host) DO NOTHING",
                &[&host, &burst],
            )?;
            let row = s.client.query_one(
                "WITH cur AS (SELECT host, \
                   least($3::float8, tokens + $2::float8 * extract(epoch FROM clock_timestamp() - updated_at)::float8) AS t, \
                   coalesce(greatest(extract(epoch FROM paused_until - clock_timestamp())::float8, 0), 0) AS paused \
                   FROM _kye_queue_rates WHERE host = $1 FOR UPDATE), \
                 g AS (SELECT host, t, paused, \
                   CASE WHEN paused > 0 THEN 0 ELSE least(greatest(floor(t), 0), $4::float8) END AS granted FROM cur) \
                 UPDATE _kye_queue_rates r SET tokens = g.t - g.granted, updated_at = clock_timestamp() \
                 FROM g WHERE r.host = g.host RETURNING g.granted, g.t - g.granted, g.paused",
                &[&host, &rate.per_second, &burst, &want],
            )?;
            let (granted, left, paused): (f64, f64, f64) = (row.get(0), row.get(1), row.get(2));
            let refill = if granted >= 1.0 {
                0.0
            } else {
                (1.0 - left).max(0.0) / rate.per_second.max(1e-9)
            };
            Ok((granted, refill, paused))
        });
        match answer {
            Ok((tokens, refill, paused)) => FleetGrant {
                tokens,
                wait: Duration::from_secs_f64(refill.max(paused).clamp(0.0, 3600.0)),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask the fleet's rate budget; waiting");
                FleetGrant {
                    tokens: 0.0,
                    wait: UNANSWERED,
                }
            }
        }
    }

    fn pause(&self, host: &str, delay: Duration) {
        let host = host.to_string();
        let ms = delay.as_secs_f64() * 1000.0;
        let done = self.conn().run(move |s| {
            s.client.execute(
                "INSERT INTO _kye_queue_rates (host, tokens, updated_at, paused_until) \
                 VALUES ($1, 0, clock_timestamp(), clock_timestamp() + $2 * interval '1 millisecond') \
                 ON CONFLICT (host) DO UPDATE SET paused_until = \
                 greatest(coalesce(_kye_queue_rates.paused_until, EXCLUDED.paused_until), EXCLUDED.paused_until)",
                &[&host, &ms],
            )
        });
        if let Err(e) = done {
            tracing::warn!(error = %e, "cannot tell the fleet to pause the host");
        }
    }
}
