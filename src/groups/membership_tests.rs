//! Tests of the membership state machine: the flows by hand, then random
//! interleavings of joins, syncs, heartbeats, leaves, crashes (silence), time and
//! commits checked against the invariants.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;

use crate::groups::assignor::{self, AssignmentStrategy};
use crate::groups::membership::*;

const SESSION_MS: u64 = 10_000;
const REBALANCE_MS: u64 = 30_000;

fn limits() -> GroupLimits {
    GroupLimits {
        session_timeout_min_ms: 1_000,
        session_timeout_max_ms: 60_000,
        initial_rebalance_delay_ms: 100,
        max_size: 50,
    }
}

fn parts(topic: &str) -> Option<i32> {
    match topic {
        "t" => Some(6),
        "u" => Some(2),
        _ => None,
    }
}

fn join_req(
    member_id: &str,
    protocol_type: &str,
    strategies: &[&str],
    topics: &[&str],
) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        client_id: "c".into(),
        client_host: "127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: protocol_type.into(),
        protocols: strategies
            .iter()
            .map(|s| Protocol {
                name: s.to_string(),
                metadata: Bytes::from(format!("meta-{s}")),
                subscription: topics.iter().map(|t| t.to_string()).collect(),
            })
            .collect(),
    }
}

fn server(member_id: &str) -> JoinRequest {
    join_req(member_id, SERVER_ASSIGNED_PROTOCOL_TYPE, &["range"], &["t"])
}

fn join_ok(replies: &[Reply], token: Token) -> JoinResult {
    for r in replies {
        if let Reply::Join(t, res) = r {
            if *t == token {
                return res.clone().expect("join succeeded");
            }
        }
    }
    panic!("no join reply for token {token}: {replies:?}");
}

#[test]
fn three_server_assigned_members_split_the_partitions_after_the_initial_delay() {
    let mut g = Group::new("g", limits());
    assert!(
        g.join(1, server(""), 0, &parts).is_empty(),
        "held for the initial delay"
    );
    assert!(g.join(2, server(""), 10, &parts).is_empty());
    assert!(g.join(3, server(""), 20, &parts).is_empty());
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let deadline = g.next_deadline_ms().unwrap();
    assert!(g.tick(deadline - 1, &parts).is_empty());
    let replies = g.tick(deadline, &parts);
    assert_eq!(replies.len(), 3);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!(g.generation(), 1);
    let mut seen = BTreeSet::new();
    for t in 1..=3 {
        let r = join_ok(&replies, t);
        assert_eq!(r.generation, 1);
        assert_eq!(r.protocol, "range");
        assert!(r.members.is_empty(), "server-side: no member list");
        let ps = &r.assignment.unwrap().partitions["t"];
        assert_eq!(ps.len(), 2);
        for p in ps {
            assert!(seen.insert(*p), "partition {p} twice");
        }
    }
    assert_eq!(seen.len(), 6);
}

#[test]
fn a_member_that_goes_silent_is_expired_and_the_rest_rebalance() {
    let mut g = Group::new("g", limits());
    g.join(1, server(""), 0, &parts);
    g.join(2, server(""), 0, &parts);
    let replies = g.tick(100, &parts);
    let a = join_ok(&replies, 1);
    let b = join_ok(&replies, 2);
    // b keeps heartbeating; a is killed and says nothing.
    let mut now = 100;
    while now < 100 + SESSION_MS as i64 - 1 {
        now += 1_000;
        g.heartbeat(
            &b.member_id,
            b.generation,
            now.min(100 + SESSION_MS as i64 - 1),
        )
        .unwrap();
        g.tick(now.min(100 + SESSION_MS as i64 - 1), &parts);
    }
    assert_eq!(g.members().len(), 2);
    g.tick(100 + SESSION_MS as i64, &parts);
    assert_eq!(g.members().len(), 1, "a expired");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&b.member_id, b.generation, 100 + SESSION_MS as i64),
        Err(GroupError::RebalanceInProgress)
    );
    // b may still commit what it processed under generation 1 before rejoining.
    g.check_commit(&b.member_id, b.generation).unwrap();
    let replies = g.join(3, server(&b.member_id), 100 + SESSION_MS as i64, &parts);
    let b2 = join_ok(&replies, 3);
    assert_eq!(b2.generation, 2);
    assert_eq!(b2.assignment.unwrap().partitions["t"].len(), 6);
    // The dead member's stale generation is fenced.
    assert_eq!(
        g.check_commit(&a.member_id, a.generation),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        g.check_commit(&b.member_id, b.generation),
        Err(GroupError::IllegalGeneration)
    );
    g.check_commit(&b2.member_id, b2.generation).unwrap();
}

#[test]
fn client_side_assignment_goes_through_the_leaders_sync() {
    let mut g = Group::new("g", limits());
    let req = |id: &str| join_req(id, "consumer", &["range", "roundrobin"], &["t"]);
    g.join(1, req(""), 0, &parts);
    g.join(2, req(""), 0, &parts);
    let replies = g.tick(100, &parts);
    let (r1, r2) = (join_ok(&replies, 1), join_ok(&replies, 2));
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    let (leader, follower) = if r1.member_id == r1.leader {
        (r1, r2)
    } else {
        (r2, r1)
    };
    assert_eq!(
        leader.members.len(),
        2,
        "the leader gets every member's metadata"
    );
    assert_eq!(leader.members[0].1, Bytes::from("meta-range"));
    assert!(follower.members.is_empty());
    // The follower's sync waits for the leader's.
    assert!(g
        .sync(
            3,
            &follower.member_id,
            follower.generation,
            BTreeMap::new(),
            110
        )
        .is_empty());
    let mut given = BTreeMap::new();
    given.insert(
        follower.member_id.clone(),
        MemberAssignment {
            raw: Bytes::from_static(b"f"),
            partitions: [("t".to_string(), vec![3, 4, 5])].into(),
        },
    );
    given.insert(
        leader.member_id.clone(),
        MemberAssignment {
            raw: Bytes::from_static(b"l"),
            partitions: [("t".to_string(), vec![0, 1, 2])].into(),
        },
    );
    let replies = g.sync(4, &leader.member_id, leader.generation, given, 120);
    assert_eq!(replies.len(), 2);
    assert!(replies.contains(&Reply::Sync(
        3,
        Ok(MemberAssignment {
            raw: Bytes::from_static(b"f"),
            partitions: [("t".to_string(), vec![3, 4, 5])].into(),
        })
    )));
    assert_eq!(g.state(), GroupState::Stable);
}

#[test]
fn bad_joins_are_refused_with_kafkas_errors() {
    let mut g = Group::new("g", limits());
    let mut bad = server("");
    bad.session_timeout_ms = 10;
    assert_eq!(
        g.join(1, bad, 0, &parts),
        vec![Reply::Join(1, Err(GroupError::InvalidSessionTimeout))]
    );
    assert_eq!(
        g.join(2, server("nobody"), 0, &parts),
        vec![Reply::Join(2, Err(GroupError::UnknownMemberId))]
    );
    assert_eq!(
        g.join(
            3,
            join_req(
                "",
                SERVER_ASSIGNED_PROTOCOL_TYPE,
                &["sticky-unknown"],
                &["t"]
            ),
            0,
            &parts
        ),
        vec![Reply::Join(3, Err(GroupError::InconsistentGroupProtocol))]
    );
    g.join(4, server(""), 0, &parts);
    assert_eq!(
        g.join(5, join_req("", "consumer", &["range"], &["t"]), 0, &parts),
        vec![Reply::Join(5, Err(GroupError::InconsistentGroupProtocol))],
        "a different protocol type"
    );
    assert_eq!(
        g.join(
            6,
            join_req("", SERVER_ASSIGNED_PROTOCOL_TYPE, &["roundrobin"], &["t"]),
            0,
            &parts
        ),
        vec![Reply::Join(6, Err(GroupError::InconsistentGroupProtocol))],
        "no strategy in common with the member already there"
    );
}

#[test]
fn the_last_member_leaving_empties_the_group_and_admin_commits_are_allowed_then() {
    let mut g = Group::new("g", limits());
    g.join(1, server(""), 0, &parts);
    let r = join_ok(&g.tick(100, &parts), 1);
    assert_eq!(g.check_commit("", -1), Err(GroupError::UnknownMemberId));
    let (res, _) = g.leave(&r.member_id, 200, &parts);
    res.unwrap();
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation(), 2, "emptying is a new generation");
    g.check_commit("", -1).unwrap();
    assert_eq!(
        g.leave(&r.member_id, 300, &parts).0,
        Err(GroupError::UnknownMemberId)
    );
}

// ---- random interleavings ---------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Join(usize),
    Sync(usize),
    Heartbeat(usize),
    Leave(usize),
    /// The client dies silently: it forgets its membership and sends nothing.
    Crash(usize),
    Commit(usize),
    /// A zombie: commits and heartbeats with an identity the client had before (an
    /// old generation, or a member id since removed).
    Zombie(usize, usize),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0usize..5;
    prop_oneof![
        3 => client.clone().prop_map(Op::Join),
        2 => client.clone().prop_map(Op::Sync),
        3 => client.clone().prop_map(Op::Heartbeat),
        1 => client.clone().prop_map(Op::Leave),
        1 => client.clone().prop_map(Op::Crash),
        2 => client.clone().prop_map(Op::Commit),
        2 => (client, 0usize..8).prop_map(|(c, k)| Op::Zombie(c, k)),
        3 => (1u16..20_000).prop_map(Op::Advance),
    ]
}

/// What a well-behaved client knows about itself.
#[derive(Clone, Debug, Default)]
struct Client {
    member_id: String,
    generation: i32,
    leader: bool,
    members: Vec<(String, Bytes)>,
    waiting_join: Option<Token>,
    waiting_sync: Option<Token>,
}

fn run(ops: Vec<Op>, client_side: bool) -> Result<(), TestCaseError> {
    let mut g = Group::new("g", limits());
    let mut clients = vec![Client::default(); 5];
    let mut now = 0i64;
    let mut next_token: Token = 1;
    let mut open: BTreeSet<Token> = BTreeSet::new();
    let mut last_completed_generation = 0;
    let mut last_generation = g.generation();
    // Every (member id, generation) any client has held.
    let mut identities: Vec<(String, i32)> = Vec::new();
    let protocol_type = if client_side {
        "consumer"
    } else {
        SERVER_ASSIGNED_PROTOCOL_TYPE
    };
    for op in ops {
        let replies = match op {
            Op::Join(c) => {
                let token = next_token;
                next_token += 1;
                open.insert(token);
                clients[c].waiting_join = Some(token);
                let topics: &[&str] = if c % 2 == 0 { &["t"] } else { &["t", "u"] };
                g.join(
                    token,
                    join_req(
                        &clients[c].member_id,
                        protocol_type,
                        &["range", "roundrobin"],
                        topics,
                    ),
                    now,
                    &parts,
                )
            }
            Op::Sync(c) if !clients[c].member_id.is_empty() => {
                let token = next_token;
                next_token += 1;
                open.insert(token);
                clients[c].waiting_sync = Some(token);
                let mut given = BTreeMap::new();
                if clients[c].leader && !clients[c].members.is_empty() {
                    // The leader assigns with the range strategy over every member.
                    let subs: BTreeMap<String, Vec<String>> = clients[c]
                        .members
                        .iter()
                        .map(|(m, _)| (m.clone(), vec!["t".to_string()]))
                        .collect();
                    for (m, tp) in assignor::assign(AssignmentStrategy::Range, &subs, &parts) {
                        given.insert(
                            m,
                            MemberAssignment {
                                raw: Bytes::new(),
                                partitions: tp,
                            },
                        );
                    }
                }
                g.sync(
                    token,
                    &clients[c].member_id.clone(),
                    clients[c].generation,
                    given,
                    now,
                )
            }
            Op::Sync(_) => Vec::new(),
            Op::Heartbeat(c) => {
                if !clients[c].member_id.is_empty() {
                    let _ = g.heartbeat(&clients[c].member_id.clone(), clients[c].generation, now);
                }
                Vec::new()
            }
            Op::Leave(c) => {
                let id = std::mem::take(&mut clients[c]).member_id;
                if id.is_empty() {
                    Vec::new()
                } else {
                    g.leave(&id, now, &parts).1
                }
            }
            Op::Crash(c) => {
                clients[c] = Client::default();
                Vec::new()
            }
            Op::Commit(c) => {
                let cl = &clients[c];
                let verdict = g.check_commit(&cl.member_id, cl.generation);
                if verdict.is_ok() && !cl.member_id.is_empty() {
                    prop_assert_eq!(
                        cl.generation,
                        g.generation(),
                        "a stale generation committed"
                    );
                    prop_assert!(g.state() != GroupState::CompletingRebalance);
                }
                Vec::new()
            }
            Op::Zombie(c, k) => {
                if !identities.is_empty() {
                    let (id, gen) = identities[(c * 8 + k) % identities.len()].clone();
                    let current =
                        g.generation() == gen && g.members().iter().any(|m| m.member_id == id);
                    if g.check_commit(&id, gen).is_ok() {
                        prop_assert!(
                            current && g.state() != GroupState::CompletingRebalance,
                            "zombie {} gen {} committed",
                            id,
                            gen
                        );
                    }
                    if g.heartbeat(&id, gen, now).is_ok() {
                        prop_assert!(current, "zombie {} gen {} heartbeat accepted", id, gen);
                    }
                }
                Vec::new()
            }
            Op::Advance(ms) => {
                now += i64::from(ms);
                g.tick(now, &parts)
            }
        };
        let mut completed: Option<i32> = None;
        for r in replies {
            let (token, ok_generation) = match &r {
                Reply::Join(t, res) => (*t, res.as_ref().ok().map(|j| j.generation)),
                Reply::Sync(t, _) => (*t, None),
            };
            prop_assert!(open.remove(&token), "a reply for a token not open: {:?}", r);
            if let Some(gen) = ok_generation {
                // The joins one rebalance completes share its generation.
                prop_assert!(
                    completed.is_none_or(|c| c == gen),
                    "one round, two generations"
                );
                completed = Some(gen);
            }
            for cl in clients.iter_mut() {
                match &r {
                    Reply::Join(t, res) if cl.waiting_join == Some(*t) => {
                        cl.waiting_join = None;
                        match res {
                            Ok(j) => {
                                identities.push((j.member_id.clone(), j.generation));
                                cl.member_id = j.member_id.clone();
                                cl.generation = j.generation;
                                cl.leader = j.leader == j.member_id;
                                cl.members = j.members.clone();
                            }
                            Err(GroupError::UnknownMemberId) => *cl = Client::default(),
                            Err(_) => {}
                        }
                    }
                    Reply::Sync(t, res) if cl.waiting_sync == Some(*t) => {
                        cl.waiting_sync = None;
                        if let Err(GroupError::UnknownMemberId) = res {
                            *cl = Client::default();
                        }
                    }
                    _ => {}
                }
            }
        }
        // Every completed rebalance has a higher generation than the one before.
        if let Some(gen) = completed {
            prop_assert!(
                gen > last_completed_generation,
                "generation {} did not increase",
                gen
            );
            last_completed_generation = gen;
        }
        // The generation never goes back, and moves by one per completed round.
        prop_assert!(g.generation() >= last_generation);
        prop_assert!(
            g.generation() <= last_generation + 1,
            "two rounds in one step"
        );
        last_generation = g.generation();
        // Each partition has at most one owner in the current generation.
        for (tp, owners) in g.owners() {
            prop_assert!(owners.len() <= 1, "{:?} owned by {:?}", tp, owners);
        }
        // A stable server-assigned group has every subscribed partition assigned:
        // every member subscribes to t (6 partitions), odd clients to u (2) too.
        if !client_side && g.state() == GroupState::Stable {
            let owners = g.owners();
            let count = |topic: &str| owners.keys().filter(|(t, _)| t == topic).count();
            prop_assert_eq!(count("t"), 6);
            prop_assert!(count("u") == 0 || count("u") == 2);
        }
        if g.state() == GroupState::Empty {
            prop_assert!(g.members().is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn server_assigned_groups_keep_their_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, false)?;
    }

    #[test]
    fn client_assigned_groups_keep_their_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops, true)?;
    }
}
