//! The PostgreSQL storage connector, with the layout of deepstream's
//! `@deepstream/storage-postgres` 3.0.4: schema `ds` by default, one table per name prefix
//! before the first `/` (else `defaultTable`), the rest of the name as the row's id, columns
//! `id text primary key, version int, val text|jsonb`. Tables are made on first use; writes wait
//! up to `writeInterval` ms to be grouped and go out as multi-row upserts per table. Unlike the
//! reference, names travel as query parameters and table names as quoted identifiers, so no
//! name can change the SQL; `"` and `;` are still dropped from tables and ids, as the reference
//! drops them, so rows it wrote are found under the same names. A row never takes an older
//! version over a newer one: servers sharing a schema (nodes of a cluster) flush their buffered
//! writes in any order, and so may one server's overlapping flushes.

use super::remote::Connector;
use super::{Layer, StorageError, StoreJob, StoreResult, StoredRecord};
use ahash::AHashMap;
use bytes::Bytes;
use serde_yaml::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Batches a shard keeps in flight against PostgreSQL: a batch of writes waits up to
/// `writeInterval` for its flush, and reads must not queue behind those.
const CONCURRENCY: usize = 64;
/// Writes waiting for the next flush before writers are refused.
pub const MAX_BUFFERED_WRITES: usize = 100_000;
/// Rows per upsert statement: a large flush is split so that the pool's connections write
/// it in parallel (one statement of 8,000 rows took ~100 ms here, with the change trigger).
const ROWS_PER_UPSERT: usize = 512;
/// The reference's code for "no such table".
const UNDEFINED_TABLE: &str = "42P01";

/// `storage.options` as the reference connector reads them (pg's pool options and its own).
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresOptions {
    pub connection_string: Option<String>,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    pub schema: String,
    pub default_table: String,
    pub max_connections: usize,
    pub write_interval: Duration,
    pub use_jsonb: bool,
    /// Tables get the reference's trigger that NOTIFYs the schema's channel on each change.
    pub notify_on_change: bool,
    /// corestream's opt-in (`followChanges: true`): LISTEN on the schema's channel, so a row
    /// another program changes reaches subscribers without a `record.notify`.
    pub follow_changes: bool,
}

impl PostgresOptions {
    pub fn parse(options: Option<&Value>) -> Result<PostgresOptions, String> {
        let o = super::options::Options::new(options, "storage.options");
        if o.get("ssl").is_some_and(|v| v != &Value::Bool(false)) {
            return Err("storage.options.ssl: TLS to PostgreSQL is not supported yet".into());
        }
        let (text, number, flag) = (
            |k: &str| o.text(k),
            |k: &str| o.number(k),
            |k: &str| o.flag(k),
        );
        let notifications = match o.get("notifications") {
            None => true,
            Some(Value::Mapping(m)) => ["INSERT", "UPDATE", "DELETE"]
                .iter()
                .any(|k| m.get(*k) != Some(&Value::Bool(false))),
            Some(_) => return Err("storage.options.notifications must be a mapping".into()),
        };
        let port = number("port")?.unwrap_or(5432);
        Ok(PostgresOptions {
            connection_string: text("connectionString")?,
            host: text("host")?.unwrap_or_else(|| "localhost".into()),
            port: u16::try_from(port).map_err(|_| "storage.options.port is out of range")?,
            user: text("user")?,
            password: text("password")?,
            database: text("database")?,
            schema: text("schema")?.unwrap_or_else(|| "ds".into()),
            default_table: text("defaultTable")?.unwrap_or_else(|| "default".into()),
            max_connections: number("max")?.map_or(10, |n| n.clamp(1, 1000) as usize),
            write_interval: Duration::from_millis(number("writeInterval")?.unwrap_or(200)),
            use_jsonb: flag("useJsonb")?.unwrap_or(false),
            notify_on_change: notifications,
            follow_changes: flag("followChanges")?.unwrap_or(false),
        })
    }

    fn pg_config(&self, timeout: Duration) -> Result<tokio_postgres::Config, String> {
        let mut config = match &self.connection_string {
            Some(s) => s
                .parse::<tokio_postgres::Config>()
                .map_err(|e| format!("storage.options.connectionString: {e}"))?,
            None => {
                let mut c = tokio_postgres::Config::new();
                c.host(&self.host).port(self.port);
                c
            }
        };
        if let Some(user) = &self.user {
            config.user(user);
        } else if config.get_user().is_none() {
            config.user(std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into()));
        }
        if let Some(password) = &self.password {
            config.password(password);
        }
        if let Some(database) = &self.database {
            config.dbname(database);
        }
        config.connect_timeout(timeout);
        config.application_name("corestream");
        Ok(config)
    }
}

/// Where a record lives: the reference's `parseDSKey`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub table: String,
    pub id: String,
}

pub fn row_key(name: &[u8], default_table: &str) -> RowKey {
    let name = String::from_utf8_lossy(name);
    let clean = |s: &str| s.replace(['"', ';'], "");
    match name.find('/') {
        Some(at) => RowKey {
            table: clean(&name[..at]),
            id: clean(&name[at + 1..]),
        },
        None => RowKey {
            table: default_table.to_string(),
            id: clean(&name),
        },
    }
}

/// An identifier quoted for SQL: `"` doubled inside quotes.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

type WriteDone = tokio::sync::oneshot::Sender<Result<(), StorageError>>;
/// A row waiting to be written: its version, its JSON and who waits for it.
type BufferedRow = (i32, Bytes, Vec<WriteDone>);

/// Writes waiting for the next flush, by table, last write per row winning.
#[derive(Default)]
struct Buffered {
    tables: AHashMap<String, AHashMap<String, BufferedRow>>,
    count: usize,
    flush_scheduled: bool,
}

/// Where followed changes go: the names of the records a row change touched.
pub type ChangeSink = Arc<dyn Fn(Vec<Bytes>) + Send + Sync>;

pub struct PostgresStorage {
    options: PostgresOptions,
    pool: deadpool_postgres::Pool,
    /// The server processes of this connector's own pool: their changes are not followed.
    own_backends: Arc<Mutex<ahash::AHashSet<i32>>>,
    timeout: Duration,
    ready: tokio::sync::OnceCell<()>,
    buffered: Mutex<Buffered>,
}

impl PostgresStorage {
    /// `timeout` is `record.storageRetrievalTimeout`: no read or flush waits longer.
    pub fn new(
        options: PostgresOptions,
        timeout: Duration,
    ) -> Result<Arc<PostgresStorage>, String> {
        let manager = deadpool_postgres::Manager::from_config(
            options.pg_config(timeout)?,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let own_backends: Arc<Mutex<ahash::AHashSet<i32>>> = Arc::default();
        let backends = own_backends.clone();
        let remember_backend = deadpool_postgres::Hook::async_fn(move |client, _| {
            let backends = backends.clone();
            Box::pin(async move {
                if let Ok(row) = client.query_one("SELECT pg_backend_pid()", &[]).await {
                    if let (Ok(pid), Ok(mut set)) = (row.try_get::<_, i32>(0), backends.lock()) {
                        set.insert(pid);
                    }
                }
                Ok(())
            })
        });
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(options.max_connections)
            .post_create(remember_backend)
            .build()
            .map_err(|e| format!("storage: {e}"))?;
        Ok(Arc::new(PostgresStorage {
            options,
            pool,
            own_backends,
            timeout,
            ready: tokio::sync::OnceCell::new(),
            buffered: Mutex::default(),
        }))
    }

    pub fn options(&self) -> &PostgresOptions {
        &self.options
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StorageError> {
        let client = self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => unavailable(e),
            other => StorageError::Unavailable(format!("postgres: {other}")),
        })?;
        // The schema and the trigger function once per process, retried until it works.
        self.ready
            .get_or_try_init(|| async {
                change_schema(&client, &self.init_sql())
                    .await
                    .map_err(unavailable)
            })
            .await?;
        Ok(client)
    }

    fn init_sql(&self) -> String {
        let schema = ident(&self.options.schema);
        // The trigger function the reference's tables call: NOTIFY "<schema>", 'OP:table:id'.
        format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE OR REPLACE FUNCTION broadcast_update() RETURNS trigger AS $$
             BEGIN
               PERFORM pg_notify(TG_TABLE_SCHEMA, TG_OP || ':' || TG_TABLE_NAME || ':' ||
                 CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
               RETURN NULL;
             END;
             $$ LANGUAGE plpgsql;"
        )
    }

    fn table(&self, table: &str) -> String {
        format!("{}.{}", ident(&self.options.schema), ident(table))
    }

    async fn create_table(
        &self,
        client: &deadpool_postgres::Object,
        table: &str,
    ) -> Result<(), StorageError> {
        let qualified = self.table(table);
        let kind = if self.options.use_jsonb {
            "jsonb"
        } else {
            "text"
        };
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {qualified} (id text NOT NULL, version int DEFAULT 0, \
             val {kind} NOT NULL, PRIMARY KEY (id));"
        );
        if self.options.notify_on_change {
            let trigger = ident(&format!(
                "broadcast_update_{}_{}",
                self.options.schema, table
            ));
            sql.push_str(&format!(
                "DROP TRIGGER IF EXISTS {trigger} ON {qualified};
                 CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {qualified}
                 FOR EACH ROW EXECUTE PROCEDURE broadcast_update();"
            ));
        }
        // Two servers may make the same table at once: the loser's error is not one.
        match change_schema(client, &sql).await {
            Ok(()) => Ok(()),
            Err(e)
                if e.code()
                    .is_some_and(|c| c.code() == "23505" || c.code() == "42P07") =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Reads for one batch: one query per table.
    async fn read(&self, names: Vec<Bytes>) -> Vec<Result<Option<StoredRecord>, StorageError>> {
        let keys: Vec<RowKey> = names
            .iter()
            .map(|n| row_key(n, &self.options.default_table))
            .collect();
        let mut by_table: AHashMap<&str, Vec<&str>> = AHashMap::new();
        for key in &keys {
            by_table.entry(&key.table).or_default().push(&key.id);
        }
        let work = async {
            let client = self.client().await?;
            let mut found: AHashMap<RowKey, StoredRecord> = AHashMap::new();
            for (table, ids) in by_table {
                let sql = format!(
                    "SELECT id, version, val::text FROM {} WHERE id = ANY($1)",
                    self.table(table)
                );
                match client.query(&sql, &[&ids]).await {
                    Ok(rows) => {
                        for row in rows {
                            let id: String = row.try_get(0).map_err(corrupt)?;
                            let version: Option<i32> = row.try_get(1).map_err(corrupt)?;
                            let val: String = row.try_get(2).map_err(corrupt)?;
                            let key = RowKey {
                                table: table.to_string(),
                                id,
                            };
                            let record = StoredRecord {
                                version: version.unwrap_or(0),
                                data: Bytes::from(val),
                            };
                            found.insert(key, record);
                        }
                    }
                    // No table yet: nothing of that prefix was ever written.
                    Err(e) if e.code().is_some_and(|c| c.code() == UNDEFINED_TABLE) => {}
                    Err(e) => return Err(unavailable(e)),
                }
            }
            Ok(found)
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(mut found)) => keys.iter().map(|k| Ok(found.remove(k))).collect(),
            Ok(Err(e)) => keys.iter().map(|_| Err(e.clone())).collect(),
            Err(_) => keys
                .iter()
                .map(|_| Err(StorageError::Timeout(Layer::Storage)))
                .collect(),
        }
    }

    /// Queues a write for the next flush; the answer comes once it is written.
    fn buffer(
        self: &Arc<Self>,
        name: &[u8],
        record: StoredRecord,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), StorageError>>, StorageError> {
        let key = row_key(name, &self.options.default_table);
        let (done, answer) = tokio::sync::oneshot::channel();
        let schedule = {
            let mut buffered = self.buffered.lock().map_err(|_| poisoned())?;
            let full = buffered.count >= MAX_BUFFERED_WRITES;
            let rows = buffered.tables.entry(key.table).or_default();
            match rows.get_mut(&key.id) {
                // A row already waiting takes a newer write in its place (never an older one).
                Some(row) => {
                    if record.version >= row.0 {
                        row.0 = record.version;
                        row.1 = record.data;
                    }
                    row.2.push(done);
                }
                None if full => {
                    return Err(StorageError::Unavailable(
                        "storage write buffer is full".into(),
                    ))
                }
                None => {
                    rows.insert(key.id, (record.version, record.data, vec![done]));
                    buffered.count += 1;
                }
            }
            !std::mem::replace(&mut buffered.flush_scheduled, true)
        };
        if schedule {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(this.options.write_interval).await;
                this.flush().await;
            });
        }
        Ok(answer)
    }

    /// Writes everything buffered: upserts of up to `ROWS_PER_UPSERT` rows of one table, all
    /// at once (each on a connection of the pool), each within the timeout.
    async fn flush(self: Arc<Self>) {
        let tables = match self.buffered.lock() {
            Ok(mut b) => {
                b.flush_scheduled = false;
                b.count = 0;
                std::mem::take(&mut b.tables)
            }
            Err(_) => return,
        };
        for (table, rows) in tables {
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let chunk: Vec<_> = rows.by_ref().take(ROWS_PER_UPSERT).collect();
                self.clone().spawn_upsert(table.clone(), chunk);
            }
        }
    }

    /// One upsert of up to `ROWS_PER_UPSERT` rows on a connection of its own, within the
    /// timeout; its writers are answered with the outcome.
    fn spawn_upsert(self: Arc<Self>, table: String, rows: Vec<(String, BufferedRow)>) {
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(rows.len());
            let mut versions = Vec::with_capacity(rows.len());
            let mut vals = Vec::with_capacity(rows.len());
            let mut waiting = Vec::with_capacity(rows.len());
            for (id, (version, data, done)) in rows {
                ids.push(id);
                versions.push(version);
                vals.push(String::from_utf8_lossy(&data).into_owned());
                waiting.extend(done);
            }
            let upsert = self.upsert(&table, &ids, &versions, &vals);
            let result = tokio::time::timeout(self.timeout, upsert)
                .await
                .unwrap_or(Err(StorageError::Timeout(Layer::Storage)));
            for done in waiting {
                let _ = done.send(result.clone());
            }
        });
    }

    async fn upsert(
        &self,
        table: &str,
        ids: &[String],
        versions: &[i32],
        vals: &[String],
    ) -> Result<(), StorageError> {
        let client = self.client().await?;
        let val = if self.options.use_jsonb {
            "d::jsonb"
        } else {
            "d"
        };
        let sql = format!(
            "INSERT INTO {table} AS existing (id, version, val) SELECT i, v, {val} \
             FROM UNNEST($1::text[], $2::int[], $3::text[]) AS u(i, v, d) \
             ON CONFLICT (id) DO UPDATE SET val = EXCLUDED.val, version = EXCLUDED.version \
             WHERE existing.version <= EXCLUDED.version",
            table = self.table(table)
        );
        for attempt in 0..2 {
            match client.execute(&sql, &[&ids, &versions, &vals]).await {
                Ok(_) => return Ok(()),
                Err(e) if attempt == 0 && e.code().is_some_and(|c| c.code() == UNDEFINED_TABLE) => {
                    self.create_table(&client, table).await?;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StorageError::Other(
            "postgres: the table could not be made".into(),
        ))
    }

    async fn delete(&self, name: &[u8]) -> Result<(), StorageError> {
        let key = row_key(name, &self.options.default_table);
        let work = async {
            let client = self.client().await?;
            let sql = format!("DELETE FROM {} WHERE id = $1", self.table(&key.table));
            match client.execute(&sql, &[&key.id]).await {
                Ok(_) => Ok(()),
                Err(e) if e.code().is_some_and(|c| c.code() == UNDEFINED_TABLE) => Ok(()),
                Err(e) => Err(unavailable(e)),
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(StorageError::Timeout(Layer::Storage)))
    }

    async fn run_batch(self: Arc<Self>, jobs: Vec<StoreJob>) -> Vec<StoreResult> {
        let reads: Vec<Bytes> = jobs
            .iter()
            .filter(|j| !matches!(j, StoreJob::Write { .. }))
            .map(|j| j.name().clone())
            .collect();
        let mut read = self.read(reads).await.into_iter();
        let mut out = Vec::with_capacity(jobs.len());
        let mut pending = Vec::new();
        for job in jobs {
            match job {
                StoreJob::Load { name } | StoreJob::Refresh { name } => {
                    let result = read.next().unwrap_or(Err(lost()));
                    out.push(StoreResult::Loaded { name, result });
                }
                StoreJob::Head { name } => {
                    let result = read
                        .next()
                        .unwrap_or(Err(lost()))
                        .map(|r| r.map_or(-1, |r| r.version));
                    out.push(StoreResult::Headed { name, result });
                }
                StoreJob::Write {
                    name,
                    record: Some(record),
                } => match self.buffer(&name, record) {
                    Ok(answer) => {
                        pending.push((out.len(), answer));
                        out.push(StoreResult::Written {
                            name,
                            result: Ok(()),
                        });
                    }
                    Err(e) => out.push(StoreResult::Written {
                        name,
                        result: Err(e),
                    }),
                },
                StoreJob::Write { name, record: None } => {
                    let result = self.delete(&name).await;
                    out.push(StoreResult::Written { name, result });
                }
            }
        }
        for (at, answer) in pending {
            let result = answer.await.unwrap_or_else(|_| Err(lost()));
            if let Some(StoreResult::Written { result: slot, .. }) = out.get_mut(at) {
                *slot = result;
            }
        }
        out
    }
}

impl PostgresStorage {
    /// Follows the schema's change notifications (the trigger's `OP:table:id`) for ever,
    /// reconnecting after a failure, and hands `sink` the names of rows that another program
    /// changed. Runs on the connector thread.
    pub async fn follow_changes(self: Arc<Self>, sink: ChangeSink) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.listen_once(&sink).await {
                Ok(()) => delay = Duration::from_millis(100),
                Err(e) => crate::log!(
                    crate::log::Level::Warn,
                    "STORAGE_NOTIFICATIONS",
                    "postgres: following changes stopped ({e}); retrying in {delay:?}"
                ),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn listen_once(&self, sink: &ChangeSink) -> Result<(), String> {
        let config = self.options.pg_config(self.timeout)?;
        let (client, mut connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                match message {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                        if tx.send((n.process_id(), n.payload().to_string())).is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {}", ident(&self.options.schema)))
            .await
            .map_err(|e| e.to_string())?;
        crate::log!(
            crate::log::Level::Info,
            "STORAGE_NOTIFICATIONS",
            "postgres: following changes in schema {}",
            self.options.schema
        );
        while let Some((pid, payload)) = rx.recv().await {
            let own = self.own_backends.lock().is_ok_and(|set| set.contains(&pid));
            if own {
                continue;
            }
            let names = changed_names(&payload, &self.options.default_table);
            if !names.is_empty() {
                sink(names);
            }
        }
        driver.abort();
        Err("the connection closed".into())
    }
}

/// The records a notification `OP:table:id` names. A row of the default table is both the
/// name without a prefix and `<defaultTable>/<id>` (both are stored there).
pub fn changed_names(payload: &str, default_table: &str) -> Vec<Bytes> {
    let mut parts = payload.splitn(3, ':');
    let (Some(op), Some(table), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Vec::new();
    };
    if !matches!(op, "INSERT" | "UPDATE" | "DELETE") {
        return Vec::new();
    }
    let mut names = vec![Bytes::from(format!("{table}/{id}"))];
    if table == default_table {
        names.push(Bytes::from(id.to_string()));
    }
    names
}

/// Which the advisory lock schema changes take: any fixed number other programs do not use.
const SCHEMA_LOCK: i64 = 0x636f_7265_7374_7265; // "corestre"

/// Runs DDL one server at a time across every server on this database. Concurrent
/// `CREATE OR REPLACE FUNCTION` or `CREATE TRIGGER` from two sessions fail with "tuple
/// concurrently updated", and the trigger function is shared by every schema. The statements go
/// as one simple query, which PostgreSQL runs as one implicit transaction: the lock is released
/// at its end, and an error rolls it all back without leaving the pooled session mid-transaction.
async fn change_schema(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({SCHEMA_LOCK});\n{sql}"
        ))
        .await
}

/// "db error" alone is what tokio-postgres displays for every error the server sent: the
/// server's own message is what an operator needs in the log.
fn described(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("postgres: {} ({})", db.message(), db.code().code()),
        None => format!("postgres: {e}"),
    }
}

fn unavailable(e: tokio_postgres::Error) -> StorageError {
    StorageError::Unavailable(described(&e))
}

fn corrupt(e: tokio_postgres::Error) -> StorageError {
    StorageError::Corrupt(described(&e))
}

fn poisoned() -> StorageError {
    StorageError::Other("postgres: the write buffer's lock was poisoned".into())
}

fn lost() -> StorageError {
    StorageError::Other("postgres: the write was lost before it was answered".into())
}

impl Connector for PostgresStorage {
    fn run(
        self: Arc<Self>,
        jobs: Vec<StoreJob>,
    ) -> Pin<Box<dyn Future<Output = Vec<StoreResult>> + Send>> {
        if jobs.is_empty() {
            return Box::pin(async { Vec::new() });
        }
        Box::pin(self.run_batch(jobs))
    }

    fn concurrency(&self) -> usize {
        CONCURRENCY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_tables_and_ids_as_the_reference_maps_them() {
        assert_eq!(
            row_key(b"users/ann/x", "default"),
            RowKey {
                table: "users".into(),
                id: "ann/x".into()
            }
        );
        assert_eq!(
            row_key(b"plain", "default"),
            RowKey {
                table: "default".into(),
                id: "plain".into()
            }
        );
        assert_eq!(row_key(b"a\";b/c;d", "t").table, "ab");
        assert_eq!(row_key(b"a\";b/c;d", "t").id, "cd");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn past_the_bound_buffered_writes_are_refused_not_queued() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut options = PostgresOptions::parse(None).unwrap();
            // Nothing listens there, and the flush is far away: the buffer only fills.
            options.port = 1;
            options.write_interval = Duration::from_secs(3600);
            let storage = PostgresStorage::new(options, Duration::from_secs(1)).unwrap();
            let record = StoredRecord {
                version: 1,
                data: Bytes::from_static(b"{}"),
            };
            let mut waiting = Vec::new();
            for i in 0..MAX_BUFFERED_WRITES {
                let name = format!("t/{i}");
                waiting.push(storage.buffer(name.as_bytes(), record.clone()).unwrap());
            }
            // A second write of a buffered row takes no new room.
            assert!(storage.buffer(b"t/0", record.clone()).is_ok());
            let refused = storage.buffer(b"t/new", record).map(|_| ());
            assert!(
                matches!(&refused, Err(StorageError::Unavailable(m)) if m.contains("full")),
                "{refused:?}"
            );
        });
    }

    #[test]
    fn notifications_name_the_changed_records() {
        assert_eq!(
            changed_names("UPDATE:users:ann:x", "default"),
            vec!["users/ann:x"]
        );
        assert_eq!(
            changed_names("DELETE:default:plain", "default"),
            vec!["default/plain", "plain"]
        );
        assert!(changed_names("CREATE_TABLE:users", "default").is_empty());
        assert!(changed_names("nonsense", "default").is_empty());
    }

    #[test]
    fn options_read_as_the_reference_reads_them() {
        let yaml: Value = serde_yaml::from_str(
            "user: u\npassword: p\nhost: db\nport: 5433\ndatabase: d\nschema: s\n\
             defaultTable: t\nmax: 4\nwriteInterval: 20\nuseJsonb: true\n\
             notifications: {INSERT: false, UPDATE: false, DELETE: false}",
        )
        .unwrap();
        let o = PostgresOptions::parse(Some(&yaml)).unwrap();
        assert_eq!((o.schema.as_str(), o.default_table.as_str()), ("s", "t"));
        assert_eq!((o.port, o.max_connections, o.use_jsonb), (5433, 4, true));
        assert_eq!(o.write_interval, Duration::from_millis(20));
        assert!(!o.notify_on_change);
        let d = PostgresOptions::parse(None).unwrap();
        assert_eq!(
            (d.schema.as_str(), d.default_table.as_str()),
            ("ds", "default")
        );
        assert_eq!(d.write_interval, Duration::from_millis(200));
        assert!(d.notify_on_change);
        assert!(!d.follow_changes);
        let ssl: Value = serde_yaml::from_str("ssl: true").unwrap();
        assert!(PostgresOptions::parse(Some(&ssl)).is_err());
    }
}
