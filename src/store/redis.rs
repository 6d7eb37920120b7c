//! The Redis cache connector, with the key layout of deepstream's `@deepstream/cache-redis`
//! 2.0.9: two keys per record, `<name>_v` (the version as text) and `<name>_d` (the JSON),
//! written together (MSET, or two SETEX with `ttl`), read together (MGET). A batch is one
//! pipeline; every shard shares one multiplexed connection, which the `redis` crate's
//! `ConnectionManager` reconnects by itself.

use super::remote::{fail_all, Connector};
use super::{Layer, StorageError, StoreJob, StoreResult, StoredRecord};
use bytes::Bytes;
use serde_yaml::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Batches a shard keeps in flight against Redis.
const CONCURRENCY: usize = 16;

/// `cache.options` as deepstream's Redis connector reads them (ioredis's names).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisOptions {
    pub url: Option<String>,
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Seconds a record is kept (`None`: for ever).
    pub ttl: Option<u64>,
    /// ioredis's `keyPrefix`, put before every key.
    pub key_prefix: String,
}

impl RedisOptions {
    pub fn parse(options: Option<&Value>) -> Result<RedisOptions, String> {
        let o = super::options::Options::new(options, "cache.options");
        if o.get("nodes").is_some() {
            return Err("cache.options.nodes: Redis Cluster is not supported yet".into());
        }
        for key in ["tls", "sentinels"] {
            if o.get(key).is_some() {
                return Err(format!("cache.options.{key}: not supported yet"));
            }
        }
        let (text, number) = (|k: &str| o.text(k), |k: &str| o.number(k));
        let port = number("port")?.unwrap_or(6379);
        Ok(RedisOptions {
            url: text("url")?,
            host: text("host")?.unwrap_or_else(|| "127.0.0.1".into()),
            port: u16::try_from(port).map_err(|_| "cache.options.port is out of range")?,
            db: number("db")?
                .map(|d| i64::try_from(d).unwrap_or(i64::MAX))
                .unwrap_or(0),
            username: text("username")?,
            password: text("password")?,
            ttl: number("ttl")?.filter(|t| *t > 0),
            key_prefix: text("keyPrefix")?.unwrap_or_default(),
        })
    }

    fn connection_info(&self) -> Result<redis::ConnectionInfo, String> {
        use redis::IntoConnectionInfo;
        let info = match &self.url {
            Some(url) => url
                .as_str()
                .into_connection_info()
                .map_err(|e| format!("cache.options.url: {e}"))?,
            None => (self.host.as_str(), self.port)
                .into_connection_info()
                .map_err(|e| format!("cache.options: {e}"))?,
        };
        // As the reference reads a url: host, port and password from it, the db from `db`.
        let mut redis = info.redis_settings().clone().set_db(self.db);
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        Ok(info.set_redis_settings(redis))
    }
}

pub struct RedisCache {
    options: RedisOptions,
    client: redis::Client,
    timeout: Duration,
    connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
}

impl RedisCache {
    /// `timeout` is `record.cacheRetrievalTimeout`: no operation waits longer.
    pub fn new(options: RedisOptions, timeout: Duration) -> Result<RedisCache, String> {
        let client =
            redis::Client::open(options.connection_info()?).map_err(|e| format!("cache: {e}"))?;
        Ok(RedisCache {
            options,
            client,
            timeout,
            connection: tokio::sync::OnceCell::new(),
        })
    }

    /// The shared connection; made on first use, inside the connector thread's runtime.
    async fn connection(&self) -> Result<redis::aio::ConnectionManager, StorageError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(2);
        self.connection
            .get_or_try_init(|| async {
                redis::aio::ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
            .cloned()
            .map_err(|e| StorageError::Unavailable(format!("redis: {e}")))
    }

    fn key(&self, name: &[u8], suffix: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.options.key_prefix.len() + name.len() + 2);
        key.extend_from_slice(self.options.key_prefix.as_bytes());
        key.extend_from_slice(name);
        key.extend_from_slice(suffix);
        key
    }

    /// One pipeline for the batch; how many replies each job owns.
    fn pipeline(&self, jobs: &[StoreJob]) -> (redis::Pipeline, Vec<usize>) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job {
                StoreJob::Load { name } | StoreJob::Refresh { name } => {
                    pipe.cmd("MGET")
                        .arg(self.key(name, b"_v"))
                        .arg(self.key(name, b"_d"));
                    replies.push(1);
                }
                StoreJob::Head { name } => {
                    pipe.cmd("GET").arg(self.key(name, b"_v"));
                    replies.push(1);
                }
                StoreJob::Write {
                    name,
                    record: Some(record),
                } => match self.options.ttl {
                    Some(ttl) => {
                        pipe.cmd("SETEX")
                            .arg(self.key(name, b"_v"))
                            .arg(ttl)
                            .arg(record.version);
                        pipe.cmd("SETEX")
                            .arg(self.key(name, b"_d"))
                            .arg(ttl)
                            .arg(record.data.as_ref());
                        replies.push(2);
                    }
                    None => {
                        pipe.cmd("MSET")
                            .arg(self.key(name, b"_v"))
                            .arg(record.version)
                            .arg(self.key(name, b"_d"))
                            .arg(record.data.as_ref());
                        replies.push(1);
                    }
                },
                StoreJob::Write { name, record: None } => {
                    pipe.cmd("DEL")
                        .arg(self.key(name, b"_v"))
                        .arg(self.key(name, b"_d"));
                    replies.push(1);
                }
            }
        }
        (pipe, replies)
    }

    async fn run_batch(&self, jobs: Vec<StoreJob>) -> Vec<StoreResult> {
        let mut connection = match self.connection().await {
            Ok(c) => c,
            Err(e) => return fail_all(jobs, e),
        };
        let (pipe, replies) = self.pipeline(&jobs);
        let answer = tokio::time::timeout(
            self.timeout,
            pipe.query_async::<Vec<redis::Value>>(&mut connection),
        )
        .await;
        let values = match answer {
            Err(_) => return fail_all(jobs, StorageError::Timeout(Layer::Cache)),
            Ok(Err(e)) => return fail_all(jobs, StorageError::Unavailable(format!("redis: {e}"))),
            Ok(Ok(values)) if values.len() == replies.iter().sum::<usize>() => values,
            Ok(Ok(_)) => {
                return fail_all(
                    jobs,
                    StorageError::Other("redis answered the wrong number of commands".into()),
                )
            }
        };
        let mut values = values.into_iter();
        jobs.into_iter()
            .zip(replies)
            .map(|(job, n)| {
                let mine: Vec<redis::Value> = values.by_ref().take(n).collect();
                answer_job(job, mine)
            })
            .collect()
    }
}

/// What a job's replies mean.
fn answer_job(job: StoreJob, replies: Vec<redis::Value>) -> StoreResult {
    use redis::Value as V;
    if let Some(V::ServerError(e)) = replies.iter().find(|v| matches!(v, V::ServerError(_))) {
        return StoreResult::failed(job, StorageError::Other(format!("redis: {e:?}")));
    }
    match job {
        StoreJob::Load { name } | StoreJob::Refresh { name } => {
            let result = match replies.into_iter().next() {
                Some(V::Array(pair)) => match pair.as_slice() {
                    [V::Nil, _] => Ok(None),
                    [version, V::BulkString(data)] => version_of(version).map(|version| {
                        Some(StoredRecord {
                            version,
                            data: Bytes::copy_from_slice(data),
                        })
                    }),
                    _ => Err(StorageError::Corrupt(
                        "a version without data in redis".into(),
                    )),
                },
                _ => Err(StorageError::Other(
                    "redis: unexpected reply to MGET".into(),
                )),
            };
            StoreResult::Loaded { name, result }
        }
        StoreJob::Head { name } => {
            let result = match replies.first() {
                Some(V::Nil) | None => Ok(-1),
                Some(version) => version_of(version),
            };
            StoreResult::Headed { name, result }
        }
        StoreJob::Write { name, .. } => StoreResult::Written {
            name,
            result: Ok(()),
        },
    }
}

/// `_v` holds the version as text (`Number(...)` in the reference).
fn version_of(value: &redis::Value) -> Result<i32, StorageError> {
    let text = match value {
        redis::Value::BulkString(b) => std::str::from_utf8(b).unwrap_or(""),
        redis::Value::SimpleString(s) => s.as_str(),
        redis::Value::Int(i) => return i32::try_from(*i).map_err(|_| corrupt_version()),
        _ => "",
    };
    text.trim().parse::<i32>().map_err(|_| corrupt_version())
}

fn corrupt_version() -> StorageError {
    StorageError::Corrupt("the version in redis is not a number".into())
}

impl Connector for RedisCache {
    fn run(
        self: Arc<Self>,
        jobs: Vec<StoreJob>,
    ) -> Pin<Box<dyn Future<Output = Vec<StoreResult>> + Send>> {
        Box::pin(async move { self.run_batch(jobs).await })
    }

    fn concurrency(&self) -> usize {
        CONCURRENCY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_as_the_reference_reads_them() {
        let yaml: Value = serde_yaml::from_str(
            "host: redis.local\nport: '6380'\ndb: 3\npassword: s3cret\nttl: 60\nkeyPrefix: 'ds:'",
        )
        .unwrap();
        let o = RedisOptions::parse(Some(&yaml)).unwrap();
        assert_eq!(
            (o.host.as_str(), o.port, o.db, o.ttl, o.key_prefix.as_str()),
            ("redis.local", 6380, 3, Some(60), "ds:")
        );
        assert_eq!(o.password.as_deref(), Some("s3cret"));
        let defaults = RedisOptions::parse(None).unwrap();
        assert_eq!((defaults.port, defaults.db, defaults.ttl), (6379, 0, None));
        let nodes: Value = serde_yaml::from_str("nodes: [{host: a}]").unwrap();
        assert!(RedisOptions::parse(Some(&nodes)).is_err());
        let bad: Value = serde_yaml::from_str("port: [1]").unwrap();
        assert!(RedisOptions::parse(Some(&bad)).is_err());
    }

    #[test]
    fn replies_map_to_records_versions_and_corruption() {
        use redis::Value as V;
        let name = Bytes::from_static(b"r");
        let load = |replies| answer_job(StoreJob::Load { name: name.clone() }, replies);
        let found = load(vec![V::Array(vec![
            V::BulkString(b"4".to_vec()),
            V::BulkString(b"{\"a\":1}".to_vec()),
        ])]);
        assert!(matches!(
            found,
            StoreResult::Loaded {
                result: Ok(Some(StoredRecord { version: 4, .. })),
                ..
            }
        ));
        let missing = load(vec![V::Array(vec![V::Nil, V::Nil])]);
        assert!(matches!(
            missing,
            StoreResult::Loaded {
                result: Ok(None),
                ..
            }
        ));
        let torn = load(vec![V::Array(vec![V::BulkString(b"4".to_vec()), V::Nil])]);
        assert!(matches!(
            torn,
            StoreResult::Loaded {
                result: Err(StorageError::Corrupt(_)),
                ..
            }
        ));
        let bad = load(vec![V::Array(vec![
            V::BulkString(b"four".to_vec()),
            V::BulkString(b"{}".to_vec()),
        ])]);
        assert!(matches!(
            bad,
            StoreResult::Loaded {
                result: Err(StorageError::Corrupt(_)),
                ..
            }
        ));
        let head = answer_job(StoreJob::Head { name: name.clone() }, vec![V::Nil]);
        assert!(matches!(head, StoreResult::Headed { result: Ok(-1), .. }));
    }
}
