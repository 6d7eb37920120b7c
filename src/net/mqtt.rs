//! The `mqtt` endpoints: a listener per endpoint on every shard (SO_REUSEPORT, as the WebSocket
//! port), and one task per MQTT connection that runs `codec::mqtt` over a connection of the
//! shard: packets in become messages for the shard, what the shard queues for the connection
//! becomes packets out.

use super::shard_io::ShardIo;
use crate::codec::mqtt::{Action, Session};
use crate::config::endpoints::Protocol;
use crate::config::Config;
use crate::shard::outbox::Outbox;
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

/// Binds every MQTT endpoint's listener for one shard: (endpoint index, listener).
pub fn bind_all(config: &Config, default_host: &str) -> Result<Vec<(u8, TcpListener)>, String> {
    let mut listeners = Vec::new();
    for (i, endpoint) in config.endpoints.iter().enumerate() {
        if endpoint.protocol != Protocol::Mqtt {
            continue;
        }
        let host = endpoint.host.as_deref().unwrap_or(default_host);
        let port = endpoint.port.unwrap_or(1883);
        let index = u8::try_from(i + 1).map_err(|_| "too many endpoints".to_string())?;
        let listener = super::bind(host, port).map_err(|e| format!("mqtt endpoint: {e}"))?;
        listeners.push((index, listener));
    }
    Ok(listeners)
}

/// Accepts MQTT connections until the server stops.
pub async fn accept(listener: TcpListener, endpoint: u8, io: Rc<ShardIo>) {
    loop {
        let accepted = async { Some(listener.accept().await) };
        let stop = async {
            while !io.runtime.stopping.load(Ordering::Relaxed) {
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            None
        };
        match futures_lite::future::or(accepted, stop).await {
            Some(Ok(stream)) => {
                io.live.set(io.live.get() + 1);
                let io = io.clone();
                glommio::spawn_local(async move {
                    serve(stream, endpoint, &io).await;
                    io.live.set(io.live.get() - 1);
                })
                .detach();
            }
            Some(Err(_)) => glommio::timer::sleep(Duration::from_millis(10)).await,
            None => break,
        }
    }
}

/// An MQTT fixed header: the packet type and up to four bytes of remaining length.
const MAX_HEADER: usize = 5;

enum Turn {
    Read(std::io::Result<usize>),
    Out,
    Idle,
}

/// One MQTT connection, from its CONNECT to its close.
async fn serve(mut stream: TcpStream, endpoint: u8, io: &Rc<ShardIo>) {
    let (max_packet, max_before_login, outgoing, idle_ms) = {
        let shard = io.shard.borrow();
        let c = shard.config();
        let idle = c.endpoint(endpoint).map_or(180_000, |e| e.idle_timeout_ms);
        let max_packet = c.max_message_size_of(endpoint);
        (
            max_packet,
            max_packet.min(c.limits.unauthenticated_max_message_size),
            c.max_outgoing_buffer,
            idle,
        )
    };
    // Every listener's budgets (`net::admission`, issue 28): the login (CONNECT to CONNACK) is
    // this socket's handshake, done within the handshake timeout from accept however it is
    // dripped; a CONNECT larger than what connections not logged in may send is refused; what
    // is held before login counts in the shard's byte budget.
    let admission = super::admission::Admission::at_accept(io)
        .filter(super::admission::Admission::room_for_another_login);
    let Some(mut admission) = admission else {
        crate::log!(
            crate::log::Level::Warn,
            "MQTT_REFUSED",
            "too many connections logging in on this shard"
        );
        let _ = stream.close().await;
        return;
    };
    let now = io.runtime.now_ms();
    let outbox = Outbox::new(outgoing, now);
    let local = io.pump.enter().open_conn_on(outbox.clone(), now, endpoint);
    let mut session = Session::default();
    let mut inbound = BytesMut::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut frames = Vec::new();
    let mut actions = Vec::new();
    let mut reason = "connection closed";
    'conn: loop {
        // The login must be done by the admission's deadline; then the client's keep-alive
        // (one and a half times it, as MQTT says) or the endpoint's idleTimeout bounds silence.
        let wait_ms = if !session.logged_in() {
            let left = admission
                .deadline()
                .saturating_duration_since(std::time::Instant::now());
            u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1)
        } else if session.keep_alive > 0 {
            u64::from(session.keep_alive) * 1500
        } else {
            idle_ms
        };
        let read = async { Turn::Read(stream.read(&mut chunk).await) };
        let out = std::future::poll_fn(|cx| {
            outbox.drain(&mut frames, cx.waker());
            if frames.is_empty() && outbox.closing().is_none() {
                Poll::Pending
            } else {
                Poll::Ready(Turn::Out)
            }
        });
        let idle = async {
            glommio::timer::sleep(Duration::from_millis(wait_ms)).await;
            Turn::Idle
        };
        let turn = futures_lite::future::or(out, futures_lite::future::or(read, idle)).await;
        match turn {
            Turn::Read(Ok(0)) | Turn::Read(Err(_)) => break,
            Turn::Idle if !session.logged_in() => {
                reason = "not logged in within the handshake timeout";
                break;
            }
            Turn::Idle => {
                reason = "keep-alive timeout";
                break;
            }
            Turn::Read(Ok(n)) => {
                outbox.heard(io.runtime.now_ms());
                inbound.extend_from_slice(chunk.get(..n).unwrap_or_default());
                let logged_in = session.logged_in();
                if !admission.hold(if logged_in { 0 } else { inbound.capacity() }) {
                    reason = "too many bytes from connections not logged in";
                    break;
                }
                // Packets sent behind the CONNECT wait for the login's answer; together they
                // are bounded as one packet before login is (with its fixed header).
                if !logged_in && inbound.len() > max_before_login.saturating_add(MAX_HEADER) {
                    reason = "more than unauthenticatedMaxMessageSize before login";
                    break;
                }
                let max = if logged_in {
                    max_packet
                } else {
                    max_before_login
                };
                if let Err(why) = dispatch(
                    &mut stream,
                    &mut session,
                    &mut inbound,
                    max,
                    io,
                    local,
                    &mut actions,
                )
                .await
                {
                    reason = why;
                    break;
                }
            }
            Turn::Out => {
                let closing = outbox.closing().is_some();
                if write_out(&mut stream, &mut session, &mut frames, &mut actions)
                    .await
                    .is_err()
                {
                    break 'conn;
                }
                if closing || actions.iter().any(|a| matches!(a, Action::Close(_))) {
                    break;
                }
                actions.clear();
                // Logged in now: what the client sent behind its CONNECT is taken.
                if session.logged_in() {
                    admission.hold(0);
                    admission.handshake_done();
                }
                if session.logged_in() && !inbound.is_empty() {
                    if let Err(why) = dispatch(
                        &mut stream,
                        &mut session,
                        &mut inbound,
                        max_packet,
                        io,
                        local,
                        &mut actions,
                    )
                    .await
                    {
                        reason = why;
                        break;
                    }
                }
            }
        }
    }
    // What is still queued (a CONNACK refusing the login, say) goes out before the close.
    let mut rest = outbox.take_all();
    let _ = write_out(&mut stream, &mut session, &mut rest, &mut actions).await;
    io.pump.enter().close_conn(local);
    outbox.abort();
    let _ = stream.close().await;
    crate::log!(crate::log::Level::Debug, "MQTT_CLOSED", "{reason}");
}

/// Decodes every complete packet in `inbound` and hands it on: messages to the shard, the
/// codec's own answers (PINGRESP, PUBACK) to the socket. `Err` is why the connection closes.
async fn dispatch(
    stream: &mut TcpStream,
    session: &mut Session,
    inbound: &mut BytesMut,
    max_packet: usize,
    io: &Rc<ShardIo>,
    local: u32,
    actions: &mut Vec<Action>,
) -> Result<(), &'static str> {
    let now = io.runtime.now_ms();
    let decoded = session.decode(inbound, max_packet, actions);
    let mut direct = Vec::new();
    let mut close = None;
    {
        let mut shard = io.pump.enter();
        for action in actions.drain(..) {
            match action {
                Action::ToShard(msg) => shard.on_client_message_of(local, msg, now),
                Action::Send(bytes) => direct.extend_from_slice(&bytes),
                Action::Close(why) => close = Some(why),
            }
        }
    }
    if !direct.is_empty() && stream.write_all(&direct).await.is_err() {
        return Err("connection closed");
    }
    if let Some(why) = close {
        return Err(why);
    }
    if let Err(e) = decoded {
        crate::log!(crate::log::Level::Info, "MQTT_PROTOCOL", "{}", e.0);
        return Err(e.0);
    }
    // Keep the buffer small between packets.
    if inbound.is_empty() && inbound.capacity() > 64 * 1024 {
        *inbound = BytesMut::new();
    }
    Ok(())
}

/// Writes the packets the shard's frames become; `actions` keeps any close they ask for.
async fn write_out(
    stream: &mut TcpStream,
    session: &mut Session,
    frames: &mut Vec<Bytes>,
    actions: &mut Vec<Action>,
) -> std::io::Result<()> {
    let mut packets = Vec::new();
    for frame in frames.drain(..) {
        if let Some(msg) = crate::codec::shard_message(&frame) {
            session.encode(&msg, actions);
        }
        for action in actions.iter() {
            if let Action::Send(bytes) = action {
                packets.extend_from_slice(bytes);
            }
        }
        actions.retain(|a| matches!(a, Action::Close(_)));
    }
    if !packets.is_empty() {
        stream.write_all(&packets).await?;
    }
    Ok(())
}
