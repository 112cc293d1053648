//! The connections of the Redis read models: to one server, or to a Redis
//! Cluster, behind one type each for the projector (blocking) and the
//! queries (async).
//!
//! `REDIS_URL` names one server (`redis://host:6379/0`), or the seed nodes
//! of a cluster, several URLs comma-separated
//! (`redis://a:7000,redis://b:7001,redis://c:7002`). On a cluster every
//! command and script is routed by its first key; a model keeps the keys a
//! script touches in one slot (a hash tag), and the few commands that span
//! slots (lookups written or read in bulk, the sweep of a model's keys) go
//! through [`get_many`], [`set_nx_many`] and [`unlink_matching`], which
//! send them to each key's node.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// The longest a query waits for Redis (then: 503), and a connection may
/// take to open.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest the projector waits for a script (a course change moving
/// many assertions takes a while).
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// The Redis deployment a URL names.
#[derive(Clone)]
pub enum Servers {
    One(Client),
    Cluster(Box<ClusterClient>),
}

impl Servers {
    pub fn open(url: &str) -> RedisResult<Self> {
        let urls: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if urls.len() > 1 {
            ClusterClient::builder(urls)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .map(|c| Servers::Cluster(Box::new(c)))
        } else {
            Client::open(url).map(Servers::One)
        }
    }

    /// A blocking connection for the projector.
    pub fn writer(&self) -> RedisResult<Writer> {
        Ok(match self {
            Servers::One(client) => {
                let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                con.set_read_timeout(Some(WRITE_TIMEOUT))?;
                con.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Writer::One(con)
            }
            Servers::Cluster(client) => {
                let con = client.get_connection()?;
                con.set_read_timeout(Some(WRITE_TIMEOUT))?;
                con.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Writer::Cluster(Box::new(con))
            }
        })
    }

    /// An async connection for the queries (cheap to clone).
    pub async fn reader(&self) -> RedisResult<Reader> {
        Ok(match self {
            Servers::One(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                Reader::One(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            Servers::Cluster(client) => Reader::Cluster(client.get_async_connection().await?),
        })
    }
}

/// The projector's connection.
pub enum Writer {
    One(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl redis::ConnectionLike for Writer {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Writer::One(c) => c.req_packed_command(cmd),
            Writer::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Writer::One(c) => c.req_packed_commands(cmd, offset, count),
            Writer::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    // A cluster routes a command by its key: it must see the command.
    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Writer::One(c) => c.req_command(cmd),
            Writer::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Writer::One(c) => c.get_db(),
            Writer::Cluster(c) => c.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            Writer::One(c) => c.supports_pipelining(),
            Writer::Cluster(c) => c.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Writer::One(c) => c.check_connection(),
            Writer::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Writer::One(c) => c.is_open(),
            Writer::Cluster(c) => c.is_open(),
        }
    }
}

/// The queries' connection.
#[derive(Clone)]
pub enum Reader {
    One(MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Reader {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Reader::One(c) => c.req_packed_command(cmd),
            Reader::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Reader::One(c) => c.req_packed_commands(cmd, offset, count),
            Reader::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Reader::One(c) => c.get_db(),
            Reader::Cluster(c) => c.get_db(),
        }
    }
}

/// `GET` of each key, in one round trip per server.
pub fn get_many(con: &mut Writer, keys: &[String]) -> RedisResult<Vec<Option<String>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    match con {
        Writer::One(c) => {
            let mut pipe = redis::pipe();
            for key in keys {
                pipe.cmd("GET").arg(key);
            }
            pipe.query(c)
        }
        Writer::Cluster(c) => {
            let mut pipe = redis::cluster::cluster_pipe();
            for key in keys {
                pipe.cmd("GET").arg(key);
            }
            pipe.query(c)
        }
    }
}

/// Each key's value, in one round trip per server: with a claim, the key
/// is set to it when missing (`SET key claim NX GET`, Redis 7.0 or
/// later), and the answer is the value it had before (none: the claim
/// took it).
pub fn lookup_many(
    con: &mut Writer,
    keys: &[(String, Option<String>)],
) -> RedisResult<Vec<Option<String>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let command = |key: &String, claim: &Option<String>| -> Cmd {
        match claim {
            Some(value) => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key).arg(value).arg("NX").arg("GET");
                cmd
            }
            None => {
                let mut cmd = redis::cmd("GET");
                cmd.arg(key);
                cmd
            }
        }
    };
    match con {
        Writer::One(c) => {
            let mut pipe = redis::pipe();
            for (key, claim) in keys {
                pipe.add_command(command(key, claim));
            }
            pipe.query(c)
        }
        Writer::Cluster(c) => {
            let mut pipe = redis::cluster::cluster_pipe();
            for (key, claim) in keys {
                pipe.add_command(command(key, claim));
            }
            pipe.query(c)
        }
    }
}

/// `SET key value NX` of each pair, in one round trip per server.
pub fn set_nx_many(con: &mut Writer, pairs: &[(String, String)]) -> RedisResult<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    match con {
        Writer::One(c) => {
            let mut pipe = redis::pipe();
            for (key, value) in pairs {
                pipe.cmd("SET").arg(key).arg(value).arg("NX").ignore();
            }
            pipe.query(c)
        }
        Writer::Cluster(c) => {
            let mut pipe = redis::cluster::cluster_pipe();
            for (key, value) in pairs {
                pipe.cmd("SET").arg(key).arg(value).arg("NX").ignore();
            }
            pipe.query(c)
        }
    }
}

/// Every key matching `pattern` (`SCAN`), on each primary of a cluster.
pub fn keys_matching(con: &mut Writer, pattern: &str) -> RedisResult<Vec<String>> {
    match con {
        Writer::One(c) => redis::Commands::scan_match::<_, String>(c, pattern)?
            .collect::<RedisResult<Vec<String>>>(),
        Writer::Cluster(c) => {
            let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(c)?;
            let mut keys: Vec<String> = Vec::new();
            for line in nodes.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else {
                    continue;
                };
                if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                    continue;
                }
                let address = address.split('@').next().unwrap_or(address);
                let Some((host, port)) = address.rsplit_once(':') else {
                    continue;
                };
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.to_owned(),
                    port,
                });
                let mut cursor = 0u64;
                loop {
                    let answer = c.route_command(
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(1_000),
                        route.clone(),
                    )?;
                    let (next, found): (u64, Vec<String>) = redis::from_redis_value(answer)?;
                    keys.extend(found);
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
            Ok(keys)
        }
    }
}

/// Deletes every key matching `pattern` (`SCAN`, then `UNLINK`), on each
/// primary of a cluster. Answers how many were deleted.
pub fn unlink_matching(con: &mut Writer, pattern: &str) -> RedisResult<usize> {
    let keys = keys_matching(con, pattern)?;
    match con {
        Writer::One(c) => {
            for some in keys.chunks(1_000) {
                redis::cmd("UNLINK").arg(some).query::<()>(c)?;
            }
        }
        Writer::Cluster(c) => {
            for some in keys.chunks(1_000) {
                let mut pipe = redis::cluster::cluster_pipe();
                for key in some {
                    pipe.cmd("UNLINK").arg(key).ignore();
                }
                pipe.query::<()>(c)?;
            }
        }
    }
    Ok(keys.len())
}
