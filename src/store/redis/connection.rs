//! The Redis connection of an instance: one server through a `ConnectionManager`, or a Redis
//! Cluster through the cluster client. Opened on first use, re-made by the client after
//! failures, closed once. A connection given a [`PushHandler`] speaks RESP3 and hands every
//! push (invalidations, and the client's own notice of a lost connection) to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
  MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
  ClientTlsConfig, Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo,
  RedisFuture, TlsCertificates, TlsMode, Value,
};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::config::{RedisTarget, RedisTls};
use crate::error::Result;
use crate::store::opened::Opened;
use crate::telemetry::{call, Backend};

/// What the `mpauthx:store` channel calls a pipeline of commands.
const PIPELINE: &str = "pipeline";

/// Records a round trip to Redis that began at `started`.
fn round_trip(started: Instant, ok: bool, operation: impl FnOnce() -> String) {
  call::store_round_trip(Backend::Redis, started, ok, operation);
}

/// The name of `cmd`'s command (`GET`, `EVALSHA`), never its keys or values.
fn command_name(cmd: &Cmd) -> String {
  match cmd.args_iter().next() {
    Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
    _ => "command".to_owned(),
  }
}

/// Bound on connecting to a server and on each reply, well inside a call's deadline.
const TIMEOUT: Duration = Duration::from_millis(700);

/// Keys each `SCAN` step looks at: few round trips even in a Redis of millions of keys.
const SCAN_COUNT: u64 = 10_000;

/// Called on the connection's reader task for each push, in the order they arrive; it must
/// not block.
pub type PushHandler = Arc<dyn Fn(PushInfo) + Send + Sync>;

/// A connection to either kind of deployment; cheap to clone, multiplexed.
#[derive(Clone)]
pub enum RedisConnection {
  Single(ConnectionManager),
  Cluster(ClusterConnection),
}

impl RedisConnection {
  /// A cluster cannot pipeline keys of different slots, so callers send such commands apart.
  pub fn is_cluster(&self) -> bool {
    matches!(self, RedisConnection::Cluster(_))
  }

  /// Sends `pipeline` to the master serving `key`, whatever else its commands name (the
  /// cluster client would route `CLIENT …` commands by their first argument).
  pub async fn pipeline_to_node_of(
    &mut self, key: &str, pipeline: Pipeline,
  ) -> redis::RedisResult<Vec<Value>> {
    let started = Instant::now();
    let replies = match self {
      RedisConnection::Single(connection) => pipeline.query_async(connection).await,
      RedisConnection::Cluster(connection) => {
        let count = pipeline.len();
        let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
        connection.route_pipeline(pipeline, 0, count, route).await
      }
    };
    round_trip(started, replies.is_ok(), || PIPELINE.to_owned());
    replies
  }
}

/// A `SCAN MATCH` pass over every key (on every master of a cluster), one step at a time, so
/// that the caller bounds each step and the whole pass, and acts on each step's keys as they
/// come. A key may be found twice, as `SCAN` promises no more.
#[derive(Clone)]
pub struct Scan {
  pattern: String,
  /// `None` before the first step; then the cursor of each node whose pass is not over,
  /// none once all are.
  cursors: Option<Vec<(Node, u64)>>,
}

/// A node of a cluster by its `host` and `port`; `None` on a single Redis.
type Node = Option<(String, u16)>;

impl Scan {
  /// A pass over the keys matching the glob `pattern`.
  pub fn new(pattern: String) -> Self {
    Self {
      pattern,
      cursors: None,
    }
  }

  /// Whether the pass is over.
  pub fn is_done(&self) -> bool {
    self.cursors.as_ref().is_some_and(Vec::is_empty)
  }

  fn command(&self, cursor: u64) -> Cmd {
    let mut scan = redis::cmd("SCAN");
    scan
      .arg(cursor)
      .arg("MATCH")
      .arg(&self.pattern)
      .arg("COUNT")
      .arg(SCAN_COUNT);
    scan
  }

  /// The scan after a step that left each node at its cursor in `cursors` (0: done).
  fn after(&self, cursors: Vec<(Node, u64)>) -> Self {
    Self {
      pattern: self.pattern.clone(),
      cursors: Some(
        cursors
          .into_iter()
          .filter(|&(_, cursor)| cursor != 0)
          .collect(),
      ),
    }
  }

  /// One step: one `SCAN` on each node whose pass is not over (on a cluster, concurrently);
  /// the keys found and the scan after the step. The scan itself is left as it was, so a
  /// failed step can be taken again.
  pub async fn step(&self, redis: &mut RedisConnection) -> redis::RedisResult<(Vec<String>, Scan)> {
    let started = Instant::now();
    let step = self.step_on(redis).await;
    round_trip(started, step.is_ok(), || "SCAN".to_owned());
    step
  }

  async fn step_on(&self, redis: &mut RedisConnection) -> redis::RedisResult<(Vec<String>, Scan)> {
    let mut keys = Vec::new();
    let mut cursors = Vec::new();
    match (redis, &self.cursors) {
      (_, Some(pending)) if pending.is_empty() => {}
      (RedisConnection::Single(connection), pending) => {
        let cursor = pending
          .as_ref()
          .and_then(|pending| pending.first())
          .map_or(0, |&(_, cursor)| cursor);
        let (next, found): (u64, Vec<String>) =
          self.command(cursor).query_async(connection).await?;
        keys = found;
        cursors.push((None, next));
      }
      (RedisConnection::Cluster(connection), None) => {
        // The first step goes to every master at once and answers per node (`host:port`);
        // each node's cursor is followed on that node.
        let all_masters = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let first = connection
          .route_command(self.command(0), all_masters)
          .await?;
        let Value::Map(replies) = first else {
          return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "unexpected reply to SCAN on every master",
          )));
        };
        for (node, reply) in replies {
          let node: String = redis::from_redis_value(node)?;
          let (cursor, found): (u64, Vec<String>) = redis::from_redis_value(reply)?;
          keys.extend(found);
          let (host, port) = node.rsplit_once(':').unwrap_or((&node, ""));
          cursors.push((
            Some((host.to_owned(), port.parse().unwrap_or_default())),
            cursor,
          ));
        }
      }
      (RedisConnection::Cluster(connection), Some(pending)) => {
        let steps = pending.iter().map(|(node, cursor)| {
          let mut connection = connection.clone();
          let (host, port) = node.clone().unwrap_or_default();
          let by_address = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
          let command = self.command(*cursor);
          async move { connection.route_command(command, by_address).await }
        });
        for ((node, _), reply) in pending
          .iter()
          .zip(futures_util::future::join_all(steps).await)
        {
          let (cursor, found): (u64, Vec<String>) = redis::from_redis_value(reply?)?;
          keys.extend(found);
          cursors.push((node.clone(), cursor));
        }
      }
    }
    Ok((keys, self.after(cursors)))
  }
}

// Every command and pipeline is a round trip, counted and timed here (see `telemetry`).
impl ConnectionLike for RedisConnection {
  fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
    let started = Instant::now();
    let reply = match self {
      RedisConnection::Single(connection) => connection.req_packed_command(cmd),
      RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
    };
    Box::pin(async move {
      let reply = reply.await;
      round_trip(started, reply.is_ok(), || command_name(cmd));
      reply
    })
  }

  fn req_packed_commands<'a>(
    &'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize,
  ) -> RedisFuture<'a, Vec<Value>> {
    let started = Instant::now();
    let replies = match self {
      RedisConnection::Single(connection) => {
        connection.req_packed_commands(pipeline, offset, count)
      }
      RedisConnection::Cluster(connection) => {
        connection.req_packed_commands(pipeline, offset, count)
      }
    };
    Box::pin(async move {
      let replies = replies.await;
      round_trip(started, replies.is_ok(), || PIPELINE.to_owned());
      replies
    })
  }

  fn get_db(&self) -> i64 {
    match self {
      RedisConnection::Single(connection) => connection.get_db(),
      RedisConnection::Cluster(connection) => connection.get_db(),
    }
  }
}

/// What the TLS client trusts and presents: the system's roots plus `tls.ca` (rustls would
/// otherwise trust the given roots instead of the system's), and the client certificate.
fn certificates(tls: &RedisTls) -> TlsCertificates {
  let root_cert = tls.ca.as_ref().map(|ca| {
    let mut bundle = String::new();
    for cert in rustls_native_certs::load_native_certs().certs {
      bundle.push_str("-----BEGIN CERTIFICATE-----\n");
      let encoded = BASE64.encode(cert.as_ref());
      for line in encoded.as_bytes().chunks(64) {
        bundle.push_str(std::str::from_utf8(line).unwrap_or_default());
        bundle.push('\n');
      }
      bundle.push_str("-----END CERTIFICATE-----\n");
    }
    bundle.push_str(ca);
    bundle.into_bytes()
  });
  let client_tls = tls.client.as_ref().map(|(cert, key)| ClientTlsConfig {
    client_cert: cert.clone().into_bytes(),
    client_key: key.clone().into_bytes(),
  });
  TlsCertificates {
    client_tls,
    root_cert,
  }
}

/// For nodes given as `rediss://` URLs (config checked that all are, or none), the TLS mode
/// and what the client trusts and presents; `None` for plain text.
fn tls_of(nodes: &[String], tls: &RedisTls) -> Option<(TlsMode, TlsCertificates)> {
  if !nodes.iter().any(|node| node.starts_with("rediss://")) {
    return None;
  }
  let mode = if tls.verify {
    TlsMode::Secure
  } else {
    TlsMode::Insecure
  };
  Some((mode, certificates(tls)))
}

enum Client {
  Single(redis::Client, ConnectionManagerConfig),
  Cluster(ClusterClient),
  Sentinel(tokio::sync::Mutex<SentinelClient>, ConnectionManagerConfig),
}

/// How a connection to one server is kept: bounded connects and replies, one quick retry.
fn manager_config<S>(push_sender: Option<S>) -> ConnectionManagerConfig
where
  S: redis::aio::AsyncPushSender,
{
  let config = ConnectionManagerConfig::new()
    .set_connection_timeout(Some(TIMEOUT))
    .set_response_timeout(Some(TIMEOUT))
    .set_number_of_retries(1)
    .set_max_delay(Duration::from_millis(500));
  match push_sender {
    Some(sender) => config.set_push_sender(sender),
    None => config,
  }
}

/// `host:port` of each URL, for messages.
fn addresses(urls: &[String]) -> String {
  urls
    .iter()
    .map(|url| address(url))
    .collect::<Vec<_>>()
    .join(", ")
}

/// Makes the connection on first use and hands out clones of it.
pub struct Connector {
  client: Client,
  connection: Opened<RedisConnection>,
  /// Which server this is, for messages: `Redis at host:port`, never a password.
  server: String,
}

/// `host:port` of a Redis URL (or the socket's path), without user or password.
fn address(url: &str) -> String {
  match url.into_connection_info().map(|info| info.addr().clone()) {
    Ok(ConnectionAddr::Tcp(host, port)) | Ok(ConnectionAddr::TcpTls { host, port, .. }) => {
      format!("{host}:{port}")
    }
    Ok(ConnectionAddr::Unix(path)) => path.display().to_string(),
    _ => "an invalid URL".to_owned(),
  }
}

impl Connector {
  /// Checks the URLs without connecting; `password`, when given, applies to every node.
  /// With `push`, the connection speaks RESP3 and hands its pushes to it.
  pub fn new(
    target: &RedisTarget, password: Option<&str>, tls: &RedisTls, push: Option<PushHandler>,
  ) -> Result<Self> {
    let push_sender = |handler: PushHandler| {
      move |info: PushInfo| {
        handler(info);
        Ok::<(), std::convert::Infallible>(())
      }
    };
    let client = match target {
      RedisTarget::Single(url) => {
        let mut info = url.as_str().into_connection_info()?;
        let mut settings = info.redis_settings().clone();
        if let Some(password) = password {
          settings = settings.set_password(password);
        }
        if push.is_some() {
          settings = settings.set_protocol(ProtocolVersion::RESP3);
        }
        info = info.set_redis_settings(settings);
        let config = manager_config(push.map(push_sender));
        let client = match info.addr().clone() {
          ConnectionAddr::TcpTls { host, port, .. } => {
            let addr = ConnectionAddr::TcpTls {
              host,
              port,
              insecure: !tls.verify,
              tls_params: None,
            };
            redis::Client::build_with_tls(info.set_addr(addr), certificates(tls))?
          }
          _ => redis::Client::open(info)?,
        };
        Client::Single(client, config)
      }
      RedisTarget::Cluster(nodes) => {
        let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
          .connection_timeout(TIMEOUT)
          .response_timeout(TIMEOUT);
        if let Some(password) = password {
          builder = builder.password(password);
        }
        if let Some((mode, certificates)) = tls_of(nodes, tls) {
          builder = builder.tls(mode).certs(certificates);
        }
        if let Some(handler) = push {
          builder = builder
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(push_sender(handler));
        }
        Client::Cluster(builder.build()?)
      }
      RedisTarget::Sentinel {
        nodes,
        master_name,
        sentinel_password,
      } => {
        let sentinels = nodes
          .iter()
          .map(|node| Ok(node.as_str().into_connection_info()?.addr().clone()))
          .collect::<Result<Vec<_>>>()?;
        let mut builder =
          SentinelClientBuilder::new(sentinels, master_name, SentinelServerType::Master)?;
        if let Some(password) = password {
          builder = builder.set_client_to_redis_password(password);
        }
        if let Some(password) = sentinel_password {
          builder = builder.set_client_to_sentinel_password(password);
        }
        if let Some((mode, certificates)) = tls_of(nodes, tls) {
          builder = builder
            .set_client_to_sentinel_tls_mode(mode)
            .set_client_to_sentinel_certificates(certificates.clone())
            .set_client_to_redis_tls_mode(mode)
            .set_client_to_redis_certificates(certificates);
        }
        if push.is_some() {
          builder = builder.set_client_to_redis_protocol(ProtocolVersion::RESP3);
        }
        Client::Sentinel(
          tokio::sync::Mutex::new(builder.build()?),
          manager_config(push.map(push_sender)),
        )
      }
    };
    let server = match target {
      RedisTarget::Single(url) => format!("Redis at {}", address(url)),
      RedisTarget::Cluster(nodes) => format!("Redis Cluster at {}", addresses(nodes)),
      RedisTarget::Sentinel {
        nodes, master_name, ..
      } => format!(
        "Redis master {master_name:?} of the sentinels at {}",
        addresses(nodes)
      ),
    };
    Ok(Self {
      client,
      connection: Opened::new(),
      server,
    })
  }

  /// Which server this is, for messages: `Redis at host:port` or `Redis Cluster at …`.
  pub fn server(&self) -> &str {
    &self.server
  }

  /// The connection, made now if this is its first use.
  pub async fn get(&self) -> Result<RedisConnection> {
    if let Some(connection) = self.connection.current()? {
      return Ok(connection);
    }
    let connection = match &self.client {
      Client::Single(client, config) => RedisConnection::Single(
        ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?,
      ),
      // The cluster client learns the slot map as it connects; concurrent first calls
      // may each connect, and all but the first connection are dropped.
      Client::Cluster(client) => RedisConnection::Cluster(client.get_async_connection().await?),
      // The sentinels name the master now; `forget_master` makes the next call ask again.
      Client::Sentinel(sentinel, config) => {
        let master = sentinel.lock().await.async_get_client().await?;
        RedisConnection::Single(ConnectionManager::new_lazy_with_config(
          master,
          config.clone(),
        )?)
      }
    };
    self.connection.keep(connection)
  }

  /// After a lost connection: with Sentinel, drops the connection to the master, so that the
  /// next call asks the sentinels which server is the master now (after a failover, the old
  /// one is gone or a replica). Says whether it dropped one; otherwise the client reconnects
  /// by itself to the same server.
  pub fn forget_master(&self) -> bool {
    if !matches!(self.client, Client::Sentinel(..)) {
      return false;
    }
    self.connection.reopen_on_next_use()
  }

  /// Drops the connection; later calls fail with [`Error::Closed`](crate::error::Error::Closed).
  pub fn close(&self) {
    self.connection.close();
  }
}
