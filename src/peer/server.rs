//! The inter-broker listener: serves the other voters on the coordination executor.
//!
//! A connection must open with a PeerHello naming a configured voter whose address
//! has the connection's source IP, and the cluster id when both sides know it;
//! otherwise it is answered with an error and closed. After that every frame is on
//! that broker's behalf: a Raft message whose sender is another node, or a
//! registration or heartbeat for another broker id, closes the connection (a peer
//! claiming another broker's id changes nothing). Raft messages are stepped in as
//! they arrive; requests run as tasks of their own so a registration waiting for a
//! commit does not hold up the Raft messages behind it.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use glommio::net::{TcpListener, TcpStream};
use ringlog_schema::peer::{
    AdminResponseT, BrokerHeartbeatResponseT, PeerBodyT, PeerEnvelopeT, PeerError,
    PeerHelloResponseT, RegisterBrokerResponseT,
};
use ringlog_schema::peer_frame::encode_peer;
use tracing::{info, warn};

use crate::cluster::controller::{Heartbeat, HeartbeatAnswer};
use crate::cluster::quorum::QuorumNode;
use crate::core::coordinator::{raft_id, Coordinator};
use crate::core::messages::PartitionError;
use crate::core::remote::AdminCall;
use crate::metadata::{BrokerId, BrokerInfo};
use crate::net::SocketReader;
use crate::peer::{codec, read_peer_frame};

/// How long a new connection has to say hello.
pub const HELLO_TIMEOUT_MS: u64 = 5_000;
/// Answers queued for one peer connection before its requests wait.
const ANSWERS_QUEUED_MAX: usize = 256;

/// Accepts peer connections until the broker stops.
pub async fn accept_loop(coordinator: Rc<Coordinator>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve(coordinator.clone(), stream)).detach();
            }
            Err(e) => {
                warn!(error = %e, "inter-broker accept failed");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn answer(correlation_id: u64, body: PeerBodyT) -> Vec<u8> {
    encode_peer(&PeerEnvelopeT {
        correlation_id,
        body,
    })
}

/// Checks the hello against the voters and the cluster id; `Err` is the refusal.
fn admit(
    coordinator: &Coordinator,
    from: Option<SocketAddr>,
    env: &PeerEnvelopeT,
) -> Result<i32, (PeerError, String)> {
    let PeerBodyT::PeerHello(hello) = &env.body else {
        return Err((
            PeerError::INVALID_REQUEST,
            "the first frame must be a PeerHello".into(),
        ));
    };
    let Some(voter) = coordinator.voter_addr(hello.broker_id) else {
        return Err((
            PeerError::INVALID_REQUEST,
            format!("broker {} is not a voter of this cluster", hello.broker_id),
        ));
    };
    let from_ip: Option<IpAddr> = from.map(|a| a.ip());
    if from_ip != Some(voter.ip()) {
        return Err((
            PeerError::INVALID_REQUEST,
            format!(
                "broker {} is at {}, not {from_ip:?}",
                hello.broker_id,
                voter.ip()
            ),
        ));
    }
    let ours = coordinator.cluster_id();
    let theirs = hello.cluster_id.clone().unwrap_or_default();
    if !ours.is_empty() && !theirs.is_empty() && ours != theirs {
        return Err((
            PeerError::INCONSISTENT_CLUSTER_ID,
            format!("cluster {theirs:?} is not this cluster ({ours:?})"),
        ));
    }
    Ok(hello.broker_id)
}

/// Serves one peer connection.
async fn serve(coordinator: Rc<Coordinator>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let from = stream.peer_addr().ok();
    let (reader, mut writer) = futures_lite::io::split(stream);
    let mut reader = SocketReader::new(reader, fd);
    let hello = futures_lite::future::or(async { read_peer_frame(&mut reader).await }, async {
        glommio::timer::sleep(Duration::from_millis(HELLO_TIMEOUT_MS)).await;
        Err("no hello in time".to_string())
    })
    .await;
    let env = match hello {
        Ok(Some(env)) => env,
        Ok(None) => return,
        Err(e) => {
            warn!(peer = ?from, error = %e, "inter-broker connection refused");
            crate::net::shutdown_both(fd);
            return;
        }
    };
    let peer = match admit(&coordinator, from, &env) {
        Ok(id) => id,
        Err((error, message)) => {
            warn!(peer = ?from, reason = %message, "inter-broker connection refused");
            let refusal = PeerBodyT::PeerHelloResponse(Box::new(PeerHelloResponseT {
                error,
                message: Some(message),
                broker_id: coordinator.broker_id(),
            }));
            let _ = writer.write_all(&answer(env.correlation_id, refusal)).await;
            crate::net::shutdown_both(fd);
            return;
        }
    };
    let replica_shard = match &env.body {
        PeerBodyT::PeerHello(h) => h.replica_shard,
        _ => -1,
    };
    if replica_shard >= i32::from(coordinator.shards()) {
        let refusal = PeerBodyT::PeerHelloResponse(Box::new(PeerHelloResponseT {
            error: PeerError::INVALID_REQUEST,
            message: Some(format!(
                "shard {replica_shard} does not exist: this broker has {}",
                coordinator.shards()
            )),
            broker_id: coordinator.broker_id(),
        }));
        let _ = writer.write_all(&answer(env.correlation_id, refusal)).await;
        crate::net::shutdown_both(fd);
        return;
    }
    let welcome = PeerBodyT::PeerHelloResponse(Box::new(PeerHelloResponseT {
        error: PeerError::NONE,
        message: None,
        broker_id: coordinator.broker_id(),
    }));
    if writer
        .write_all(&answer(env.correlation_id, welcome))
        .await
        .is_err()
    {
        return;
    }
    if let Ok(shard) = u16::try_from(replica_shard) {
        hand_over(&coordinator, fd, shard, peer).await;
        return;
    }
    info!(peer, addr = ?from, "peer connected");
    let (tx, rx) = flume::bounded::<Vec<u8>>(ANSWERS_QUEUED_MAX);
    let writer_task = glommio::spawn_local(async move {
        while let Ok(frame) = rx.recv_async().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let why = loop {
        let env = match read_peer_frame(&mut reader).await {
            Ok(Some(env)) => env,
            Ok(None) => break "closed by the peer".to_string(),
            Err(e) => break e,
        };
        match handle(&coordinator, peer, env, &tx) {
            Ok(()) => {}
            Err(e) => break e,
        }
    };
    info!(peer, reason = %why, "peer connection closed");
    drop(tx);
    crate::net::shutdown_both(fd);
    let _ = writer_task.await;
}

/// Gives a welcomed replica-fetch connection to the data shard it names: the
/// shard gets a duplicate of the descriptor, and the coordinator's copy closes
/// when this task's stream is dropped. Nothing else was read from the socket (the
/// follower waits for the welcome before sending a fetch).
async fn hand_over(coordinator: &Coordinator, fd: RawFd, shard: u16, follower: i32) {
    // SAFETY: `fd` is the open socket this task's stream owns; the duplicate is
    // close-on-exec like every other descriptor of the broker.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        warn!(follower, error = %std::io::Error::last_os_error(), "cannot hand a replica connection over");
        return;
    }
    if let Err(e) = coordinator
        .adopt_replica_connection(shard, dup, BrokerId(follower))
        .await
    {
        warn!(follower, shard, error = %e, "data shard did not take the replica connection");
        // SAFETY: the shard did not take the duplicate; it is still ours to close.
        unsafe { libc::close(dup) };
    }
}

/// Handles one frame from `peer`; `Err` closes the connection.
fn handle(
    coordinator: &Rc<Coordinator>,
    peer: i32,
    env: PeerEnvelopeT,
    answers: &flume::Sender<Vec<u8>>,
) -> Result<(), String> {
    let correlation_id = env.correlation_id;
    match env.body {
        PeerBodyT::RaftMessages(batch) => {
            for m in batch.messages {
                let message = QuorumNode::decode_message(&m.bytes)
                    .map_err(|e| format!("malformed raft message: {e}"))?;
                if message.from != raft_id(peer) {
                    return Err(format!(
                        "broker {peer} sent a raft message from node {}",
                        message.from
                    ));
                }
                coordinator.step_raft(message);
            }
            Ok(())
        }
        PeerBodyT::RegisterBroker(r) => {
            if r.broker_id != peer {
                return Err(format!(
                    "broker {peer} tried to register broker {}",
                    r.broker_id
                ));
            }
            let c = coordinator.clone();
            let answers = answers.clone();
            glommio::spawn_local(async move {
                let broker = BrokerInfo {
                    id: BrokerId(r.broker_id),
                    host: r.host,
                    port: r.port,
                    shards: r.shards,
                    kafka: r.kafka,
                };
                let result = if c.is_active_controller() {
                    c.controller_register(broker, r.incarnation).await
                } else {
                    Err(c.not_controller())
                };
                let body = match result {
                    Ok(epoch) => RegisterBrokerResponseT {
                        error: PeerError::NONE,
                        message: None,
                        epoch,
                        leader: c.controller_leader().map_or(-1, |b| b.0),
                    },
                    Err(e) => RegisterBrokerResponseT {
                        error: codec::peer_error(e.code),
                        message: Some(e.message),
                        epoch: 0,
                        leader: c.controller_leader().map_or(-1, |b| b.0),
                    },
                };
                let _ = answers
                    .send_async(answer(
                        correlation_id,
                        PeerBodyT::RegisterBrokerResponse(Box::new(body)),
                    ))
                    .await;
            })
            .detach();
            Ok(())
        }
        PeerBodyT::BrokerHeartbeat(h) => {
            if h.broker_id != peer {
                return Err(format!(
                    "broker {peer} sent a heartbeat for broker {}",
                    h.broker_id
                ));
            }
            let leader = coordinator.controller_leader().map_or(-1, |b| b.0);
            let body = if coordinator.is_active_controller() {
                match coordinator.controller_heartbeat(Heartbeat {
                    broker: BrokerId(h.broker_id),
                    epoch: h.epoch,
                    applied_offset: h.applied_offset,
                    want_shutdown: h.want_shutdown,
                }) {
                    HeartbeatAnswer::Ok { fenced } => BrokerHeartbeatResponseT {
                        error: PeerError::NONE,
                        fenced,
                        leader,
                    },
                    HeartbeatAnswer::StaleEpoch => BrokerHeartbeatResponseT {
                        error: PeerError::STALE_BROKER_EPOCH,
                        fenced: true,
                        leader,
                    },
                }
            } else {
                BrokerHeartbeatResponseT {
                    error: PeerError::NOT_CONTROLLER,
                    fenced: true,
                    leader,
                }
            };
            answers
                .try_send(answer(
                    correlation_id,
                    PeerBodyT::BrokerHeartbeatResponse(Box::new(body)),
                ))
                .map_err(|_| "the peer reads no answers".to_string())
        }
        PeerBodyT::CreateTopics(c) => spawn_admin(
            coordinator,
            correlation_id,
            AdminCall::CreateTopics {
                topics: c
                    .topics
                    .into_iter()
                    .map(codec::new_topic_from_wire)
                    .collect(),
                validate_only: c.validate_only,
            },
            answers,
        ),
        PeerBodyT::DeleteTopics(d) => spawn_admin(
            coordinator,
            correlation_id,
            AdminCall::DeleteTopics { names: d.names },
            answers,
        ),
        PeerBodyT::CreatePartitions(c) => spawn_admin(
            coordinator,
            correlation_id,
            AdminCall::CreatePartitions {
                topics: c.topics.into_iter().map(|t| (t.name, t.total)).collect(),
                validate_only: c.validate_only,
            },
            answers,
        ),
        PeerBodyT::AlterTopicConfigs(a) => {
            let (topic, alteration, validate_only) = codec::alteration_from_wire(*a);
            spawn_admin(
                coordinator,
                correlation_id,
                AdminCall::AlterTopicConfigs {
                    topic,
                    alteration,
                    validate_only,
                },
                answers,
            )
        }
        PeerBodyT::ElectLeaders(e) => {
            let (kind, partitions) = codec::election_from_wire(*e);
            spawn_admin(
                coordinator,
                correlation_id,
                AdminCall::ElectLeaders { kind, partitions },
                answers,
            )
        }
        PeerBodyT::AlterPartition(a) => {
            let change = codec::isr_change_from_wire(*a);
            if change.leader.0 != peer {
                return Err(format!(
                    "broker {peer} asked for an ISR change as leader {}",
                    change.leader.0
                ));
            }
            spawn_admin(
                coordinator,
                correlation_id,
                AdminCall::AlterPartition(change),
                answers,
            )
        }
        other => Err(format!("unexpected frame from broker {peer}: {other:?}")),
    }
}

fn spawn_admin(
    coordinator: &Rc<Coordinator>,
    correlation_id: u64,
    call: AdminCall,
    answers: &flume::Sender<Vec<u8>>,
) -> Result<(), String> {
    let c = coordinator.clone();
    let answers = answers.clone();
    glommio::spawn_local(async move {
        let result: Result<_, PartitionError> = c.admin_as_controller(call).await;
        let leader = c.controller_leader().map_or(-1, |b| b.0);
        let body = match result {
            Ok(outcomes) => AdminResponseT {
                error: PeerError::NONE,
                message: None,
                results: Some(outcomes.iter().map(codec::outcome_to_wire).collect()),
                leader,
            },
            Err(e) => AdminResponseT {
                error: codec::peer_error(e.code),
                message: Some(e.message),
                results: None,
                leader,
            },
        };
        let _ = answers
            .send_async(answer(
                correlation_id,
                PeerBodyT::AdminResponse(Box::new(body)),
            ))
            .await;
    })
    .detach();
    Ok(())
}
