//! The group consumer: joins a consumer group (the broker assigns partitions),
//! heartbeats in the background, reads its assignment from the committed offsets
//! (or `auto.offset.reset`), commits (automatically every `auto.commit.interval`, or
//! when asked), and on a rebalance commits what it returned, gives its partitions up
//! and rejoins. Delivery is at least once: records returned since the last commit
//! may be delivered again to the next owner of their partition.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringlog_schema::wire::{
    BodyT, DeleteGroupsRequestT, DescribeGroupsRequestT, ErrorCode, GroupDescriptionT,
    GroupListingT, GroupProtocolT, HeartbeatRequestT, JoinGroupRequestT, LeaveGroupRequestT,
    OffsetCommitPartitionT, OffsetCommitRequestT, OffsetFetchRequestT, TopicPartitionT,
};

use crate::client::cluster::unexpected;
use crate::client::{Client, ClientError, Consumer, ConsumerConfig, Record};

/// The protocol type of broker-assigned groups.
pub const PROTOCOL_TYPE: &str = "ringlog";

/// Where to start a partition the group has no committed offset for
/// (`auto.offset.reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail: the application must decide.
    None,
}

/// Group consumer settings (Kafka's names in the docs).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `group.id`.
    pub group: String,
    pub topics: Vec<String>,
    /// `client.id`.
    pub client_id: String,
    /// `session.timeout.ms`: the broker removes a member silent for this long.
    pub session_timeout: Duration,
    /// `max.poll.interval.ms` in spirit: how long the group waits for members to
    /// rejoin in a rebalance.
    pub rebalance_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `partition.assignment.strategy`: "range" or "roundrobin".
    pub strategy: String,
    /// `enable.auto.commit` with `auto.commit.interval.ms`; `None` commits only on
    /// [`GroupConsumer::commit`].
    pub auto_commit: Option<Duration>,
    /// `auto.offset.reset`.
    pub offset_reset: OffsetReset,
    pub fetch: ConsumerConfig,
}

impl GroupConfig {
    pub fn new(group: &str, topics: &[&str]) -> Self {
        Self {
            group: group.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            client_id: "ringlog-consumer".into(),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(3),
            strategy: "range".into(),
            auto_commit: Some(Duration::from_secs(5)),
            offset_reset: OffsetReset::Latest,
            fetch: ConsumerConfig::default(),
        }
    }
}

/// What the heartbeat task and the consumer share.
struct Membership {
    member_id: RefCell<String>,
    generation: Cell<i32>,
    /// Set when the broker says the member must rejoin.
    rejoin: Cell<bool>,
    /// Set when the consumer is closed: the heartbeat task stops.
    closed: Cell<bool>,
}

/// A member of a consumer group.
pub struct GroupConsumer {
    client: Client,
    config: GroupConfig,
    membership: Rc<Membership>,
    /// One consumer per topic with assigned partitions.
    consumers: Vec<Consumer>,
    next_consumer: usize,
    assignment: BTreeMap<String, Vec<i32>>,
    last_commit: Instant,
}

impl GroupConsumer {
    /// Joins the group and positions on the assigned partitions.
    pub async fn join(client: Client, config: GroupConfig) -> Result<Self, ClientError> {
        if config.heartbeat_interval >= config.session_timeout {
            return Err(ClientError::Config(
                "heartbeat interval must be shorter than the session timeout".into(),
            ));
        }
        let membership = Rc::new(Membership {
            member_id: RefCell::new(String::new()),
            generation: Cell::new(-1),
            rejoin: Cell::new(true),
            closed: Cell::new(false),
        });
        glommio::spawn_local(heartbeat_loop(
            client.clone(),
            config.group.clone(),
            config.heartbeat_interval,
            Rc::downgrade(&membership),
        ))
        .detach();
        let mut me = Self {
            client,
            config,
            membership,
            consumers: Vec::new(),
            next_consumer: 0,
            assignment: BTreeMap::new(),
            last_commit: Instant::now(),
        };
        me.rejoin().await?;
        Ok(me)
    }

    pub fn member_id(&self) -> String {
        self.membership.member_id.borrow().clone()
    }

    pub fn generation(&self) -> i32 {
        self.membership.generation.get()
    }

    /// This member's partitions, by topic.
    pub fn assignment(&self) -> &BTreeMap<String, Vec<i32>> {
        &self.assignment
    }

    /// The next records of the assignment; rejoins first if the group rebalanced,
    /// and commits first when the auto-commit interval has passed. Empty when nothing
    /// arrived within the fetch wait.
    pub async fn poll(&mut self) -> Result<Vec<Record>, ClientError> {
        if let Some(every) = self.config.auto_commit {
            if self.last_commit.elapsed() >= every {
                self.commit_or_rejoin().await?;
            }
        }
        if self.membership.rejoin.get() {
            if self.config.auto_commit.is_some() {
                // Before giving the partitions up: what was returned is processed.
                self.commit_or_rejoin().await?;
            }
            self.rejoin().await?;
        }
        if self.consumers.is_empty() {
            // Nothing assigned (more members than partitions): wait as a fetch would.
            glommio::timer::sleep(Duration::from_millis(u64::from(
                self.config.fetch.max_wait_ms,
            )))
            .await;
            return Ok(Vec::new());
        }
        let i = self.next_consumer % self.consumers.len();
        self.next_consumer = self.next_consumer.wrapping_add(1);
        self.consumers[i].poll().await
    }

    /// Commits the position after every record returned so far.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        self.commit_with(&BTreeMap::new()).await
    }

    /// Commits the positions, except that a (topic, partition) in `overrides`
    /// commits the given offset: for an application that processed only part of
    /// what a poll returned.
    pub async fn commit_with(
        &mut self,
        overrides: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), ClientError> {
        let mut partitions = Vec::new();
        for c in &self.consumers {
            for (partition, offset) in c.positions() {
                let topic = c.topic().to_string();
                let offset = overrides
                    .get(&(topic.clone(), partition))
                    .copied()
                    .unwrap_or(offset);
                partitions.push(OffsetCommitPartitionT {
                    topic,
                    partition,
                    offset,
                    metadata: None,
                });
            }
        }
        self.last_commit = Instant::now();
        if partitions.is_empty() {
            return Ok(());
        }
        commit_offsets(
            &self.client,
            &self.config.group,
            &self.member_id(),
            self.generation(),
            partitions,
        )
        .await
    }

    /// Commits (with auto-commit on), leaves the group (its partitions go to the
    /// others at once) and stops heartbeating.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let committed = if self.config.auto_commit.is_some() {
            self.commit().await
        } else {
            Ok(())
        };
        let left = self.leave().await;
        committed.and(left)
    }

    /// Leaves the group without committing.
    pub async fn leave(&mut self) -> Result<(), ClientError> {
        self.membership.closed.set(true);
        let body = BodyT::LeaveGroupRequest(Box::new(LeaveGroupRequestT {
            group: self.config.group.clone(),
            member_id: self.member_id(),
        }));
        let frame = group_request(&self.client, &self.config.group, body).await?;
        match frame.envelope.body {
            BodyT::LeaveGroupResponse(r) if r.error == ErrorCode::NONE => Ok(()),
            BodyT::LeaveGroupResponse(r) => Err(ClientError::broker(r.error, r.message)),
            other => Err(unexpected(other)),
        }
    }

    /// A commit refused because the group moved on is not an error: the member
    /// rejoins, and the records since the last commit may come again (at least once).
    async fn commit_or_rejoin(&mut self) -> Result<(), ClientError> {
        match self.commit().await {
            Err(e)
                if matches!(
                    e.code(),
                    Some(
                        ErrorCode::REBALANCE_IN_PROGRESS
                            | ErrorCode::ILLEGAL_GENERATION
                            | ErrorCode::UNKNOWN_MEMBER_ID
                    )
                ) =>
            {
                if e.code() == Some(ErrorCode::UNKNOWN_MEMBER_ID) {
                    self.membership.member_id.borrow_mut().clear();
                }
                self.membership.rejoin.set(true);
                Ok(())
            }
            other => other,
        }
    }

    /// Gives up the current partitions, joins (waiting for the rebalance), and
    /// positions on the new assignment.
    async fn rejoin(&mut self) -> Result<(), ClientError> {
        self.consumers.clear();
        self.assignment.clear();
        loop {
            self.membership.rejoin.set(false);
            let body = BodyT::JoinGroupRequest(Box::new(JoinGroupRequestT {
                group: self.config.group.clone(),
                member_id: Some(self.member_id()),
                client_id: Some(self.config.client_id.clone()),
                session_timeout_ms: millis(self.config.session_timeout),
                rebalance_timeout_ms: millis(self.config.rebalance_timeout),
                protocol_type: Some(PROTOCOL_TYPE.into()),
                protocols: Some(vec![GroupProtocolT {
                    name: self.config.strategy.clone(),
                    topics: Some(self.config.topics.clone()),
                    metadata: None,
                }]),
            }));
            let frame = group_request(&self.client, &self.config.group, body).await?;
            let r = match frame.envelope.body {
                BodyT::JoinGroupResponse(r) => r,
                other => return Err(unexpected(other)),
            };
            match r.error {
                ErrorCode::NONE => {
                    *self.membership.member_id.borrow_mut() = r.member_id.unwrap_or_default();
                    self.membership.generation.set(r.generation);
                    for a in r.assignment.unwrap_or_default() {
                        self.assignment
                            .insert(a.topic, a.partitions.unwrap_or_default());
                    }
                    break;
                }
                ErrorCode::UNKNOWN_MEMBER_ID => self.membership.member_id.borrow_mut().clear(),
                ErrorCode::REBALANCE_IN_PROGRESS => {}
                code => return Err(ClientError::broker(code, r.message)),
            }
        }
        self.position().await
    }

    /// Starts each assigned partition at its committed offset, else per
    /// `auto.offset.reset`.
    async fn position(&mut self) -> Result<(), ClientError> {
        let wanted: Vec<TopicPartitionT> = self
            .assignment
            .iter()
            .flat_map(|(t, ps)| {
                ps.iter().map(|p| TopicPartitionT {
                    topic: t.clone(),
                    partition: *p,
                })
            })
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let committed = fetch_committed(&self.client, &self.config.group, wanted).await?;
        for (topic, partitions) in &self.assignment {
            let mut starts = Vec::new();
            for p in partitions {
                let offset = match committed.get(&(topic.clone(), *p)) {
                    Some(o) if *o >= 0 => *o,
                    _ => match self.config.offset_reset {
                        OffsetReset::Earliest => self.client.list_offset(topic, *p, -2).await?,
                        OffsetReset::Latest => self.client.list_offset(topic, *p, -1).await?,
                        OffsetReset::None => {
                            return Err(ClientError::Config(format!(
                                "group {:?} has no committed offset for {topic}-{p} and auto.offset.reset is none",
                                self.config.group
                            )))
                        }
                    },
                };
                starts.push((*p, offset));
            }
            self.consumers.push(Consumer::assign_at(
                self.client.clone(),
                topic,
                starts,
                self.config.fetch.clone(),
            ));
        }
        Ok(())
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// Tries a group request makes (finding the coordinator again between them) before
/// its error is returned.
const COORDINATOR_ATTEMPTS: u32 = 10;

/// Pause before finding a moved or unavailable coordinator again.
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(100);

/// Sends a request about `group` to its coordinator. When the coordinator moved
/// or is not available (its `__consumer_offsets` partition changed leader, the
/// topic is being created, the connection broke), it is found again and the
/// request resent, up to `COORDINATOR_ATTEMPTS` times. Every group request is
/// safe to resend: a join or sync is answered by the group's state, a commit
/// writes the same offsets again.
async fn group_request(
    client: &Client,
    group: &str,
    body: BodyT,
) -> Result<ringlog_schema::frame::Frame, ClientError> {
    let mut attempt = 1;
    loop {
        let answer = match client.coordinator_connection(group).await {
            Ok(conn) => conn.request(body.clone(), Vec::new()).await,
            Err(e) => Err(e),
        };
        let moved = match &answer {
            Ok(frame) => coordinator_error(&frame.envelope.body).is_some_and(coordinator_moved),
            Err(ClientError::Broker { code, .. }) => coordinator_moved(*code),
            Err(_) => true,
        };
        if !moved || attempt >= COORDINATOR_ATTEMPTS {
            return answer;
        }
        attempt += 1;
        client.forget_coordinator(group);
        glommio::timer::sleep(COORDINATOR_BACKOFF).await;
    }
}

/// Errors after which the group's coordinator is to be found again.
fn coordinator_moved(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NOT_COORDINATOR
            | ErrorCode::COORDINATOR_NOT_AVAILABLE
            | ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
    )
}

/// The group-level error of a group response.
fn coordinator_error(body: &BodyT) -> Option<ErrorCode> {
    match body {
        BodyT::JoinGroupResponse(r) => Some(r.error),
        BodyT::SyncGroupResponse(r) => Some(r.error),
        BodyT::HeartbeatResponse(r) => Some(r.error),
        BodyT::LeaveGroupResponse(r) => Some(r.error),
        BodyT::OffsetCommitResponse(r) => Some(r.error),
        BodyT::OffsetFetchResponse(r) => Some(r.error),
        BodyT::DescribeGroupsResponse(r) => r.groups.as_ref()?.first().map(|g| g.error),
        BodyT::DeleteGroupsResponse(r) => r.results.as_ref()?.first().map(|g| g.error),
        _ => None,
    }
}

/// Commits offsets for `group`. An empty member id with generation -1 commits from
/// outside the group, which the broker accepts only while the group has no members.
pub async fn commit_offsets(
    client: &Client,
    group: &str,
    member_id: &str,
    generation: i32,
    partitions: Vec<OffsetCommitPartitionT>,
) -> Result<(), ClientError> {
    let body = BodyT::OffsetCommitRequest(Box::new(OffsetCommitRequestT {
        group: group.to_string(),
        member_id: Some(member_id.to_string()),
        generation,
        partitions: Some(partitions),
    }));
    let frame = group_request(client, group, body).await?;
    let r = match frame.envelope.body {
        BodyT::OffsetCommitResponse(r) => r,
        other => return Err(unexpected(other)),
    };
    if r.error != ErrorCode::NONE {
        return Err(ClientError::broker(r.error, r.message));
    }
    for p in r.partitions.unwrap_or_default() {
        if p.error != ErrorCode::NONE {
            return Err(ClientError::broker(
                p.error,
                Some(format!(
                    "{}-{}: {}",
                    p.topic,
                    p.partition,
                    p.message.unwrap_or_default()
                )),
            ));
        }
    }
    Ok(())
}

/// Committed offsets of `group` for `partitions` (all it has when empty):
/// (topic, partition) → offset, -1 where nothing is committed.
pub async fn fetch_committed(
    client: &Client,
    group: &str,
    partitions: Vec<TopicPartitionT>,
) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
    let body = BodyT::OffsetFetchRequest(Box::new(OffsetFetchRequestT {
        group: group.to_string(),
        partitions: Some(partitions),
    }));
    let frame = group_request(client, group, body).await?;
    let r = match frame.envelope.body {
        BodyT::OffsetFetchResponse(r) => r,
        other => return Err(unexpected(other)),
    };
    if r.error != ErrorCode::NONE {
        return Err(ClientError::broker(r.error, r.message));
    }
    Ok(r.offsets
        .unwrap_or_default()
        .into_iter()
        .map(|o| ((o.topic, o.partition), o.offset))
        .collect())
}

/// Heartbeats while the consumer lives; flags a rejoin when the broker asks for one.
async fn heartbeat_loop(
    client: Client,
    group: String,
    every: Duration,
    membership: std::rc::Weak<Membership>,
) {
    loop {
        glommio::timer::sleep(every).await;
        let Some(m) = membership.upgrade() else {
            return;
        };
        if m.closed.get() {
            return;
        }
        let member_id = m.member_id.borrow().clone();
        if member_id.is_empty() || m.rejoin.get() {
            continue;
        }
        let body = BodyT::HeartbeatRequest(Box::new(HeartbeatRequestT {
            group: group.clone(),
            member_id,
            generation: m.generation.get(),
        }));
        drop(m);
        let answer = group_request(&client, &group, body).await;
        let Some(m) = membership.upgrade() else {
            return;
        };
        match answer {
            Ok(frame) => {
                if let BodyT::HeartbeatResponse(r) = frame.envelope.body {
                    match r.error {
                        ErrorCode::NONE => {}
                        ErrorCode::UNKNOWN_MEMBER_ID => {
                            m.member_id.borrow_mut().clear();
                            m.rejoin.set(true);
                        }
                        _ => m.rejoin.set(true),
                    }
                }
            }
            // The connection is gone: the consumer's own requests will say so.
            Err(_) => return,
        }
    }
}

/// The groups of a cluster: each broker lists the groups it coordinates (as
/// Kafka's ListGroups), so every broker in the metadata is asked and the answers
/// merged by name. Brokers that cannot be asked are returned apart, with why, so
/// a caller shows what it has and says what is missing (Kafka's admin client
/// `listConsumerGroups().valid()` and `.errors()`).
pub async fn list_groups(client: &Client) -> Result<GroupList, ClientError> {
    client.metadata(Some(Vec::new()), false).await?;
    let mut groups: BTreeMap<String, GroupListingT> = BTreeMap::new();
    let mut unreachable = Vec::new();
    for id in client.broker_ids() {
        match list_broker_groups(client, id).await {
            Ok(listed) => {
                for g in listed {
                    groups.entry(g.group.clone()).or_insert(g);
                }
            }
            Err(e) => unreachable.push((id, e)),
        }
    }
    Ok(GroupList {
        groups: groups.into_values().collect(),
        unreachable,
    })
}

/// What `list_groups` found.
pub struct GroupList {
    /// By name.
    pub groups: Vec<GroupListingT>,
    /// Brokers that could not be asked, and why.
    pub unreachable: Vec<(i32, ClientError)>,
}

/// The groups one broker coordinates: (group, state, protocol type, members).
async fn list_broker_groups(client: &Client, id: i32) -> Result<Vec<GroupListingT>, ClientError> {
    let body = BodyT::ListGroupsRequest(Box::default());
    let frame = client
        .connection_to(id)
        .await?
        .request(body, Vec::new())
        .await?;
    match frame.envelope.body {
        BodyT::ListGroupsResponse(r) if r.error == ErrorCode::NONE => {
            Ok(r.groups.unwrap_or_default())
        }
        BodyT::ListGroupsResponse(r) => Err(ClientError::broker(r.error, r.message)),
        other => Err(unexpected(other)),
    }
}

/// One group's state, members and their assignments.
pub async fn describe_group(
    client: &Client,
    group: &str,
) -> Result<GroupDescriptionT, ClientError> {
    let body = BodyT::DescribeGroupsRequest(Box::new(DescribeGroupsRequestT {
        groups: Some(vec![group.to_string()]),
    }));
    let frame = group_request(client, group, body).await?;
    let r = match frame.envelope.body {
        BodyT::DescribeGroupsResponse(r) => r,
        other => return Err(unexpected(other)),
    };
    let d = r
        .groups
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Protocol("empty DescribeGroups answer".into()))?;
    if d.error != ErrorCode::NONE {
        return Err(ClientError::broker(d.error, d.message));
    }
    Ok(d)
}

/// Deletes a group's committed offsets; refused while it has members.
pub async fn delete_group(client: &Client, group: &str) -> Result<(), ClientError> {
    let body = BodyT::DeleteGroupsRequest(Box::new(DeleteGroupsRequestT {
        groups: Some(vec![group.to_string()]),
    }));
    let frame = group_request(client, group, body).await?;
    let r = match frame.envelope.body {
        BodyT::DeleteGroupsResponse(r) => r,
        other => return Err(unexpected(other)),
    };
    match r.results.unwrap_or_default().into_iter().next() {
        Some(g) if g.error == ErrorCode::NONE => Ok(()),
        Some(g) => Err(ClientError::broker(g.error, g.message)),
        None => Err(ClientError::Protocol("empty DeleteGroups answer".into())),
    }
}
