//! Following commits made anywhere: the head every `wait_for` watches.
//!
//! A listener task holds its own connection with `LISTEN <schema>_head`. Every append
//! transaction sends the new head with `pg_notify` (delivered at commit, in commit
//! order), and the task raises the head it publishes. Notifications can be lost (the
//! connection drops, the listener reconnects), so the task also reads the head table:
//! right after each `LISTEN` (everything committed before it is seen then, everything
//! after it is notified), and every `poll_interval_ms` whatever happens. A waiter thus
//! learns of a commit within one poll interval at worst, and usually at once.
//!
//! While the listener cannot reach the database, the head carries a fault: waiters
//! fail with it instead of waiting silently, and it is cleared on reconnect.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use crate::store::Shared;

/// Longest pause between two connection attempts.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(5);

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut delay = shared.options.poll_interval();
    loop {
        match follow(&shared).await {
            Ok(()) => {
                // The connection was lost after working: reconnect at once.
                delay = shared.options.poll_interval();
            }
            Err(reason) => {
                tracing::warn!(%reason, "the PostgreSQL listener cannot follow the log");
                shared.set_fault(Some(reason));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_DELAY_MAX);
            }
        }
    }
}

/// Follows the head over one connection until it fails. `Ok` when it had been
/// working (a reconnect should be tried at once), `Err` with the reason otherwise.
async fn follow(shared: &Shared) -> Result<(), String> {
    let (client, connection) = tokio::time::timeout(
        shared.options.connect_timeout(),
        shared.config_for("listener").connect(tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| "connecting timed out".to_string())?
    .map_err(|e| format!("connecting: {e}"))?;

    let (notifications_tx, mut notifications) = mpsc::unbounded_channel();
    let mut connection = connection;
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if notifications_tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "the PostgreSQL listener connection failed");
                    break;
                }
            }
        }
    });
    let _abort_driver = AbortOnDrop(driver);

    // Every round trip is bounded: a connection gone silent (a lost network, where
    // no one closes the socket) is given up after `connect_timeout_ms`.
    let query_timeout = shared.options.connect_timeout();
    tokio::time::timeout(
        query_timeout,
        client.batch_execute(&format!("LISTEN {}", shared.channel)),
    )
    .await
    .map_err(|_| format!("LISTEN {} timed out", shared.channel))?
    .map_err(|e| format!("LISTEN {}: {e}", shared.channel))?;
    let read_head = tokio::time::timeout(query_timeout, client.prepare(&shared.sql.read_head))
        .await
        .map_err(|_| "preparing the head query timed out".to_string())?
        .map_err(|e| format!("preparing the head query: {e}"))?;
    let poll = async || -> Result<(), String> {
        let row = tokio::time::timeout(query_timeout, client.query_one(&read_head, &[]))
            .await
            .map_err(|_| "reading the head timed out".to_string())?
            .map_err(|e| format!("reading the head: {e}"))?;
        let next: i64 = row
            .try_get(0)
            .map_err(|e| format!("reading the head: {e}"))?;
        shared.publish_head(u64::try_from(next).unwrap_or(0));
        Ok(())
    };
    // Listening already: whatever commits from now on is notified; what committed
    // before is read here.
    poll().await?;
    shared.set_fault(None);
    tracing::debug!(channel = %shared.channel, "listening for commits");

    let mut ticks = tokio::time::interval(shared.options.poll_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            payload = notifications.recv() => match payload {
                Some(payload) => match payload.parse::<u64>() {
                    Ok(next) => shared.publish_head(next),
                    Err(_) => tracing::warn!(%payload, "ignoring a notification that is not a position"),
                },
                None => return Ok(()),
            },
            _ = ticks.tick() => {
                if let Err(reason) = poll().await {
                    tracing::warn!(%reason, "the PostgreSQL listener reconnects");
                    return Ok(());
                }
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
