//! Where jobs are kept: `jobs.db` in the data folder, one row per app id
//! and job name with the job as protobuf, when it was created, its next
//! trigger and how often it has triggered. Every call runs on the blocking
//! pool; a change wakes the trigger loop ([`JobStore::changed`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use dapr::dapr::proto::runtime::v1 as pb;
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use super::Timing;
use crate::error::DaprError;

/// The jobs of every app whose sidecar uses this data folder.
pub struct JobStore {
    connection: Arc<Mutex<Connection>>,
    changes: Notify,
}

impl JobStore {
    /// Opens (creating if needed) `path`.
    pub fn open(path: &Path) -> rusqlite::Result<JobStore> {
        let connection = crate::sqlite_file::open_shared(
            path,
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS jobs (
                 app_id     TEXT NOT NULL,
                 name       TEXT NOT NULL,
                 job        BLOB NOT NULL,
                 created_ms INTEGER NOT NULL,
                 next_ms    INTEGER,
                 fired      INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (app_id, name)
             );
             CREATE INDEX IF NOT EXISTS jobs_next ON jobs (app_id, next_ms);",
            crate::sqlite_file::BUSY_TIMEOUT,
        )?;
        Ok(JobStore {
            connection: Arc::new(Mutex::new(connection)),
            changes: Notify::new(),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut connection)
        })
        .await
        .map_err(|e| format!("the jobs store failed: {e}"))?
    }

    /// Wakes the trigger loop: a job was added or removed.
    pub fn changed(&self) {
        self.changes.notify_one();
    }

    /// Until [`JobStore::changed`] is called.
    pub async fn wait_for_change(&self) {
        self.changes.notified().await;
    }

    /// Stores `job`, first triggered at `next`; a job of that name is
    /// replaced only with `overwrite`.
    pub(crate) async fn insert(
        &self,
        app_id: &str,
        job: pb::Job,
        created: i64,
        next: Option<i64>,
        overwrite: bool,
    ) -> Result<(), DaprError> {
        let Some(next) = next else {
            return Err(DaprError::JobSchedule(
                tonic::Code::InvalidArgument,
                format!(
                    "job {} would never trigger: its ttl or repeats end it first",
                    job.name
                ),
            ));
        };
        let app_id = app_id.to_string();
        let name = job.name.clone();
        let inserted = self
            .run(move |c| {
                let verb = if overwrite {
                    "INSERT OR REPLACE"
                } else {
                    "INSERT OR IGNORE"
                };
                c.execute(
                    &format!(
                        "{verb} INTO jobs (app_id, name, job, created_ms, next_ms, fired)
                         VALUES (?1, ?2, ?3, ?4, ?5, 0)"
                    ),
                    params![app_id, job.name, job.encode_to_vec(), created, next],
                )
                .map_err(|e| e.to_string())
            })
            .await
            .map_err(|reason| DaprError::JobSchedule(tonic::Code::Internal, reason))?;
        if inserted == 0 {
            return Err(DaprError::JobSchedule(
                tonic::Code::AlreadyExists,
                format!("rpc error: code = AlreadyExists desc = job already exists: {name}"),
            ));
        }
        Ok(())
    }

    /// The job `name` of `app_id`.
    pub(crate) async fn get(&self, app_id: &str, name: &str) -> Result<Option<pb::Job>, String> {
        let (app_id, name) = (app_id.to_string(), name.to_string());
        self.run(move |c| {
            let blob: Option<Vec<u8>> = c
                .query_row(
                    "SELECT job FROM jobs WHERE app_id = ?1 AND name = ?2",
                    params![app_id, name],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|e| e.to_string())?;
            blob.map(|blob| decode(&blob)).transpose()
        })
        .await
    }

    /// Every job of `app_id`, by name.
    pub(crate) async fn list(&self, app_id: &str) -> Result<Vec<pb::Job>, String> {
        let app_id = app_id.to_string();
        self.run(move |c| {
            let mut statement = c
                .prepare("SELECT job FROM jobs WHERE app_id = ?1 ORDER BY name")
                .map_err(|e| e.to_string())?;
            let blobs = statement
                .query_map(params![app_id], |row| row.get::<_, Vec<u8>>(0))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| e.to_string())?;
            blobs.iter().map(|blob| decode(blob)).collect()
        })
        .await
    }

    /// Deletes `app_id`'s job `name`, or (`prefix`) every one whose name
    /// starts with it.
    pub(crate) async fn delete(
        &self,
        app_id: &str,
        name: &str,
        prefix: bool,
    ) -> Result<(), String> {
        let (app_id, name) = (app_id.to_string(), name.to_string());
        self.run(move |c| {
            let sql = if prefix {
                "DELETE FROM jobs WHERE app_id = ?1 AND substr(name, 1, length(?2)) = ?2"
            } else {
                "DELETE FROM jobs WHERE app_id = ?1 AND name = ?2"
            };
            c.execute(sql, params![app_id, name])
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// When `app_id`'s next trigger is due (Unix milliseconds).
    pub(crate) async fn next_due(&self, app_id: &str) -> Result<Option<i64>, String> {
        let app_id = app_id.to_string();
        self.run(move |c| {
            c.query_row(
                "SELECT min(next_ms) FROM jobs WHERE app_id = ?1",
                params![app_id],
                |row| row.get(0),
            )
            .map_err(|e| e.to_string())
        })
        .await
    }

    /// The jobs of `app_id` due at `now`, each moved on to its next
    /// trigger, or deleted after its last. A trigger missed while no
    /// sidecar ran is sent once, not once per missed time.
    pub(crate) async fn take_due(&self, app_id: &str, now: i64) -> Result<Vec<pb::Job>, String> {
        let app_id = app_id.to_string();
        self.run(move |c| {
            let tx = c.transaction().map_err(|e| e.to_string())?;
            let due: Vec<(String, Vec<u8>, i64, i64, u32)> = {
                let mut statement = tx
                    .prepare(
                        "SELECT name, job, created_ms, next_ms, fired FROM jobs
                         WHERE app_id = ?1 AND next_ms <= ?2 ORDER BY next_ms",
                    )
                    .map_err(|e| e.to_string())?;
                statement
                    .query_map(params![app_id, now], |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                        ))
                    })
                    .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| e.to_string())?
            };
            let mut jobs = Vec::with_capacity(due.len());
            for (name, blob, created, next, fired) in due {
                let job = decode(&blob)?;
                let fired = fired.saturating_add(1);
                let after = Timing::of(&job, created)
                    .ok()
                    .and_then(|timing| timing.after(next.max(now), fired));
                match after {
                    Some(after) => tx.execute(
                        "UPDATE jobs SET next_ms = ?3, fired = ?4 WHERE app_id = ?1 AND name = ?2",
                        params![app_id, name, after, fired],
                    ),
                    None => tx.execute(
                        "DELETE FROM jobs WHERE app_id = ?1 AND name = ?2",
                        params![app_id, name],
                    ),
                }
                .map_err(|e| e.to_string())?;
                jobs.push(job);
            }
            tx.commit().map_err(|e| e.to_string())?;
            Ok(jobs)
        })
        .await
    }
}

fn decode(blob: &[u8]) -> Result<pb::Job, String> {
    pb::Job::decode(blob).map_err(|e| format!("a stored job cannot be read: {e}"))
}
