//! `pubsub.redis`: Redis Streams, laid out as daprd lays them out.
//!
//! - A topic is a stream; an event is an entry with one field, `data`
//!   (`XADD`, trimmed to `maxLenApprox` entries when set).
//! - Each app reads through a consumer group named by its `consumerID`
//!   (created at the start of the stream when missing, so events published
//!   before the first subscription are delivered too).
//! - An entry is acknowledged (`XACK`) only once the sidecar is done with
//!   it (the ids waiting go in one `XACK`). Entries read but never acknowledged (the sidecar died) are read
//!   again: this consumer's own pending entries when it starts, and any
//!   consumer's entries idle for `processingTimeout` (default 60 s),
//!   claimed every `redeliverInterval` (default 60 s; 0 turns it off).
//! - Publishing and acks reconnect as [`crate::redis_conn`] says. A
//!   subscription whose reading connection Redis dropped connects again
//!   every second, and a consumer group Redis no longer has (it restarted
//!   without its data) is created again, as daprd does.
//!
//! Metadata: the connection's ([`crate::redis_conn`]), plus
//! `processingTimeout`, `redeliverInterval`, `maxLenApprox`, `queueDepth`
//! (entries read at once, default 100), `concurrency` (events with the app
//! at once, default 10 as daprd; `1` delivers in order).

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamAutoClaimReply, StreamId};
use tokio::sync::mpsc;

use crate::redis_conn::ConnectError;

use super::{
    Broker, BrokerError, Message, SUBSCRIPTION_BUFFER, metadata_duration, metadata_number,
};

/// How long one blocking read waits before looking at claims again.
const READ_BLOCK: Duration = Duration::from_secs(1);

/// A Redis Streams broker.
pub struct RedisBroker {
    client: redis::Client,
    host: String,
    /// Publishes and acks.
    connection: ConnectionManager,
    processing_timeout: Duration,
    redeliver_interval: Duration,
    max_len_approx: Option<usize>,
    queue_depth: usize,
    /// `concurrency`: events of a subscription with the app at once
    /// (daprd's default, 10; 1 delivers in order).
    concurrency: usize,
}

fn backend(err: redis::RedisError) -> BrokerError {
    BrokerError::Backend(err.to_string())
}

impl RedisBroker {
    /// Connects with the component's metadata.
    pub async fn open(properties: &HashMap<String, String>) -> Result<Self, BrokerError> {
        let crate::redis_conn::Connected {
            client,
            host,
            connection,
        } = crate::redis_conn::connect(properties)
            .await
            .map_err(|e| match e {
                ConnectError::Metadata(reason) => BrokerError::Metadata(reason),
                ConnectError::Redis(reason) => BrokerError::Backend(reason),
            })?;
        let number = |name: &str, default: usize| metadata_number(properties, name, default);
        Ok(RedisBroker {
            client,
            host,
            connection,
            processing_timeout: metadata_duration(
                properties,
                "processingTimeout",
                Duration::from_secs(60),
            )?,
            redeliver_interval: metadata_duration(
                properties,
                "redeliverInterval",
                Duration::from_secs(60),
            )?,
            max_len_approx: Some(number("maxLenApprox", 0)?).filter(|&n| n > 0),
            queue_depth: number("queueDepth", 100)?.max(1),
            concurrency: number("concurrency", 10)?.max(1),
        })
    }

    /// The `XADD` of one event to `topic`.
    fn xadd(&self, topic: &str, payload: Vec<u8>) -> redis::Cmd {
        let mut command = redis::cmd("XADD");
        command.arg(topic);
        if let Some(max) = self.max_len_approx {
            command.arg("MAXLEN").arg("~").arg(max);
        }
        command.arg("*").arg("data").arg(payload);
        command
    }
}

/// A connection of its own for a subscription's blocking reads.
async fn reader_connection(
    client: &redis::Client,
    host: &str,
) -> Result<MultiplexedConnection, String> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(READ_BLOCK + Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("Redis at {host}: {e}"))
}

/// Creates consumer group `group` at the start of stream `topic` (and the
/// stream), unless it exists.
async fn create_group(
    connection: &mut MultiplexedConnection,
    topic: &str,
    group: &str,
) -> Result<(), redis::RedisError> {
    let created: Result<(), redis::RedisError> =
        connection.xgroup_create_mkstream(topic, group, "0").await;
    match created {
        Err(err) if err.code() != Some("BUSYGROUP") => Err(err),
        _ => Ok(()),
    }
}

#[async_trait::async_trait]
impl Broker for RedisBroker {
    fn delivery_concurrency(&self) -> usize {
        self.concurrency
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), BrokerError> {
        self.xadd(topic, payload)
            .query_async::<String>(&mut self.connection.clone())
            .await
            .map(drop)
            .map_err(backend)
    }

    /// One pipeline of `XADD`s: one round trip for them all. They share a
    /// stream, so they succeed or fail together.
    async fn publish_many(
        &self,
        topic: &str,
        payloads: Vec<Vec<u8>>,
    ) -> Vec<Result<(), BrokerError>> {
        let count = payloads.len();
        if count == 0 {
            return Vec::new();
        }
        let mut pipeline = redis::pipe();
        for payload in payloads {
            pipeline.add_command(self.xadd(topic, payload));
        }
        match pipeline
            .query_async::<Vec<String>>(&mut self.connection.clone())
            .await
        {
            Ok(_) => (0..count).map(|_| Ok(())).collect(),
            Err(err) => {
                let reason = err.to_string();
                (0..count)
                    .map(|_| Err(BrokerError::Backend(reason.clone())))
                    .collect()
            }
        }
    }

    async fn subscribe(
        &self,
        topic: &str,
        consumer_id: &str,
    ) -> Result<mpsc::Receiver<Message>, BrokerError> {
        let mut reader = reader_connection(&self.client, &self.host)
            .await
            .map_err(BrokerError::Backend)?;
        create_group(&mut reader, topic, consumer_id)
            .await
            .map_err(backend)?;
        let (sender, receiver) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let (acks, ids) = mpsc::unbounded_channel();
        tokio::spawn(acknowledge_entries(
            ids,
            self.connection.clone(),
            topic.to_string(),
            consumer_id.to_string(),
        ));
        let stream = StreamReader {
            client: self.client.clone(),
            host: self.host.clone(),
            topic: topic.to_string(),
            group: consumer_id.to_string(),
            reader,
            acks,
            sender,
            processing_timeout: self.processing_timeout,
            redeliver_interval: self.redeliver_interval,
            queue_depth: self.queue_depth,
        };
        tokio::spawn(stream.run());
        Ok(receiver)
    }
}

/// One subscription's reading loop.
struct StreamReader {
    /// For a new reading connection after Redis dropped this one.
    client: redis::Client,
    host: String,
    topic: String,
    group: String,
    reader: MultiplexedConnection,
    /// The ids of entries done with ([`acknowledge_entries`]).
    acks: mpsc::UnboundedSender<String>,
    sender: mpsc::Sender<Message>,
    processing_timeout: Duration,
    redeliver_interval: Duration,
    queue_depth: usize,
}

impl StreamReader {
    /// Reads until the subscription's receiver is dropped: first this
    /// consumer's pending entries (left by a sidecar that died), then new
    /// entries, claiming stale ones every `redeliverInterval`.
    async fn run(mut self) {
        let mut next_claim = tokio::time::Instant::now();
        let mut pending_done = false;
        while !self.sender.is_closed() {
            let result = if !pending_done {
                self.read("0").await.map(|count| {
                    pending_done = count == 0;
                })
            } else if !self.redeliver_interval.is_zero()
                && tokio::time::Instant::now() >= next_claim
            {
                next_claim = tokio::time::Instant::now() + self.redeliver_interval;
                self.claim_stale().await
            } else {
                self.read(">").await.map(drop)
            };
            if let Err(err) = result {
                if self.sender.is_closed() {
                    break;
                }
                tracing::warn!(topic = %self.topic, error = %err, "pub/sub read from Redis failed; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.recover(&err).await;
            }
        }
    }

    /// After a failed read: a connection Redis dropped (it restarted, the
    /// network went away) is made again, and a consumer group Redis no
    /// longer has (it lost its data) is created again, as daprd does.
    async fn recover(&mut self, err: &redis::RedisError) {
        if err.is_unrecoverable_error() || err.is_connection_dropped() || err.is_timeout() {
            match reader_connection(&self.client, &self.host).await {
                Ok(reader) => {
                    tracing::info!(topic = %self.topic, "reading from Redis again on a new connection");
                    self.reader = reader;
                }
                Err(reason) => {
                    tracing::warn!(topic = %self.topic, %reason, "cannot connect to Redis again yet");
                }
            }
        }
        if err.code() == Some("NOGROUP") {
            tracing::warn!(
                topic = %self.topic,
                group = %self.group,
                "the consumer group is gone (Redis may have lost its data); creating it again"
            );
            if let Err(err) = create_group(&mut self.reader, &self.topic, &self.group).await {
                tracing::warn!(topic = %self.topic, error = %err, "cannot create the consumer group again");
            }
        }
    }

    /// Reads entries after `from` (`0`: this consumer's pending ones, `>`:
    /// new ones) and hands them on; returns how many.
    async fn read(&mut self, from: &str) -> Result<usize, redis::RedisError> {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(&self.group)
            .arg(&self.group)
            .arg("COUNT")
            .arg(self.queue_depth);
        if from == ">" {
            read.arg("BLOCK").arg(READ_BLOCK.as_millis() as u64);
        }
        read.arg("STREAMS").arg(&self.topic).arg(from);
        let reply: redis::Value = read.query_async(&mut self.reader).await?;
        let entries = stream_entries(reply)?;
        let count = entries.len();
        for (id, data) in entries {
            self.hand_on(id, data).await;
        }
        Ok(count)
    }

    /// Claims entries idle longer than `processingTimeout` (their reader
    /// died) and hands them on.
    async fn claim_stale(&mut self) -> Result<(), redis::RedisError> {
        let idle = self.processing_timeout.as_millis() as usize;
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.topic)
            .arg(&self.group)
            .arg(&self.group)
            .arg(idle)
            .arg("0-0")
            .arg("COUNT")
            .arg(self.queue_depth)
            .query_async(&mut self.reader)
            .await?;
        for StreamId { id, mut map, .. } in reply.claimed {
            let data = map
                .remove("data")
                .map(|value| redis::from_redis_value::<Vec<u8>>(value).unwrap_or_default());
            self.hand_on(id, data).await;
        }
        Ok(())
    }

    /// Sends one entry (its `data` field, if it has one) to the
    /// subscription, and acks it once it is done.
    async fn hand_on(&self, id: String, data: Option<Vec<u8>>) {
        let acks = self.acks.clone();
        match data {
            Some(payload) => {
                let message = Message::new(payload, move || {
                    let _ = acks.send(id);
                });
                // A closed subscription: the reader loop sees it and stops.
                let _ = self.sender.send(message).await;
            }
            None => {
                tracing::warn!(topic = %self.topic, %id, "stream entry without a data field; skipped");
                let _ = acks.send(id);
            }
        }
    }
}

/// A stream entry's id and `data` field.
type StreamEntry = (String, Option<Vec<u8>>);

/// The entries of an `XREADGROUP` reply as `(id, data field)`, moved out
/// of it (redis's typed `StreamReadReply` copies every value, a
/// measurable share of a busy subscription); `None` for an entry without
/// a `data` field (or one deleted while pending).
fn stream_entries(reply: redis::Value) -> Result<Vec<StreamEntry>, redis::RedisError> {
    use redis::Value;
    let unexpected = |what: &str| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "unexpected XREADGROUP reply",
            what.to_string(),
        ))
    };
    // RESP2: [[stream, entries], ...]; RESP3: {stream: entries, ...}.
    let streams: Vec<Value> = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        other => return Err(unexpected(&format!("{other:?}"))),
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else {
            return Err(unexpected("a stream's entries are not a list"));
        };
        out.reserve(entries.len());
        for entry in entries {
            let Value::Array(entry) = entry else {
                return Err(unexpected("an entry is not a list"));
            };
            let mut parts = entry.into_iter();
            let id = match parts.next() {
                Some(Value::BulkString(id)) => {
                    String::from_utf8(id).map_err(|_| unexpected("an entry id is not text"))?
                }
                Some(Value::SimpleString(id)) => id,
                _ => return Err(unexpected("an entry has no id")),
            };
            let fields: Vec<(Value, Value)> = match parts.next() {
                Some(Value::Array(flat)) => {
                    let mut flat = flat.into_iter();
                    std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
                }
                Some(Value::Map(pairs)) => pairs,
                _ => Vec::new(),
            };
            let data = fields
                .into_iter()
                .find_map(|(name, value)| match (name, value) {
                    (Value::BulkString(name), Value::BulkString(data)) if name == b"data" => {
                        Some(data)
                    }
                    _ => None,
                });
            out.push((id, data));
        }
    }
    Ok(out)
}

/// Acknowledges a subscription's entries as they are done with: all the
/// ids waiting, in one `XACK`. Ends once the subscription and its events
/// are gone.
async fn acknowledge_entries(
    mut ids: mpsc::UnboundedReceiver<String>,
    mut connection: ConnectionManager,
    topic: String,
    group: String,
) {
    /// The most ids in one `XACK`.
    const MAX_IDS: usize = 1000;
    let mut batch = Vec::with_capacity(MAX_IDS);
    while ids.recv_many(&mut batch, MAX_IDS).await > 0 {
        let acked: Result<(), redis::RedisError> = connection.xack(&topic, &group, &batch).await;
        if let Err(err) = acked {
            tracing::warn!(%topic, error = %err, events = batch.len(), "cannot acknowledge events; they will come again");
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn stream_entries_are_moved_out_of_either_reply_shape() {
        let entries = Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("other"), bulk("x"), bulk("data"), bulk("one")]),
            ]),
            // Deleted while pending: no fields.
            Value::Array(vec![bulk("2-0"), Value::Nil]),
            Value::Array(vec![
                bulk("3-0"),
                Value::Array(vec![bulk("other"), bulk("y")]),
            ]),
        ]);
        let expected = vec![
            ("1-0".to_string(), Some(b"one".to_vec())),
            ("2-0".to_string(), None),
            ("3-0".to_string(), None),
        ];
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("orders"), entries.clone()])]);
        assert_eq!(stream_entries(resp2).unwrap(), expected);
        let resp3 = Value::Map(vec![(bulk("orders"), entries)]);
        assert_eq!(stream_entries(resp3).unwrap(), expected);
        assert_eq!(stream_entries(Value::Nil).unwrap(), vec![]);
        assert!(stream_entries(Value::Int(3)).is_err());
    }
}
