//! The active controller's decisions about brokers (KIP-631), pure: sessions,
//! unfencing and fencing. It reads the applied [`ClusterMetadata`] and answers with
//! the records to propose; it never changes metadata itself, and the quorum driver
//! asks it only while its node is a ready leader ([`super::quorum::QuorumNode::leader_ready`]).
//!
//! Heartbeats are not records: they reach the active controller only, which keeps
//! each broker's last contact in memory. A controller that has just taken over
//! gives every broker a full session from then, as KRaft does, so a leader change
//! fences nobody by itself. A late heartbeat still counts as contact (KAFKA-15019):
//! contact is when it arrived, not when it was sent.

use std::collections::BTreeMap;

use crate::metadata::records::MetadataRecord;
use crate::metadata::{BrokerId, ClusterMetadata};

/// `broker.heartbeat.interval.ms` default.
pub const HEARTBEAT_INTERVAL_MS: u64 = 2_000;
/// `broker.session.timeout.ms` default.
pub const SESSION_TIMEOUT_MS: u64 = 9_000;

/// A broker's heartbeat as the controller sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub broker: BrokerId,
    pub epoch: u64,
    /// The metadata offset the broker has applied.
    pub applied_offset: u64,
    /// The broker is stopping and asks to be fenced first (controlled shutdown).
    pub want_shutdown: bool,
}

/// The controller's answer to a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatAnswer {
    /// Registered with this epoch; `fenced` as the committed metadata says.
    Ok { fenced: bool },
    /// The epoch is not the broker's current one (or it never registered): it must
    /// register again.
    StaleEpoch,
}

/// Sessions of the brokers, kept by the active controller.
#[derive(Debug)]
pub struct BrokerSessions {
    session_timeout_ms: u64,
    /// Last contact per (broker, epoch).
    contact: BTreeMap<BrokerId, (u64, u64)>,
    /// Brokers this controller has had a heartbeat from (not only a session it
    /// granted when it took over).
    heard: BTreeMap<BrokerId, u64>,
    /// Records proposed and not yet seen applied, so a decision is not proposed twice.
    in_flight: Vec<MetadataRecord>,
}

impl BrokerSessions {
    pub fn new(session_timeout_ms: u64) -> Self {
        Self {
            session_timeout_ms,
            contact: BTreeMap::new(),
            heard: BTreeMap::new(),
            in_flight: Vec::new(),
        }
    }

    /// A controller taking over: every registered broker gets a full session.
    pub fn take_over(&mut self, md: &ClusterMetadata, now_ms: u64) {
        self.contact = md
            .registrations
            .iter()
            .map(|(id, r)| (*id, (r.epoch, now_ms)))
            .collect();
        self.heard.clear();
        self.in_flight.clear();
    }

    /// Records a heartbeat; returns the answer and a record to propose (an unfence
    /// once the broker has applied its own registration).
    pub fn heartbeat(
        &mut self,
        md: &ClusterMetadata,
        hb: Heartbeat,
        now_ms: u64,
    ) -> (HeartbeatAnswer, Option<MetadataRecord>) {
        let Some(reg) = md.registrations.get(&hb.broker) else {
            return (HeartbeatAnswer::StaleEpoch, None);
        };
        if reg.epoch != hb.epoch {
            return (HeartbeatAnswer::StaleEpoch, None);
        }
        self.contact.insert(hb.broker, (hb.epoch, now_ms));
        self.heard.insert(hb.broker, hb.epoch);
        let mut record = None;
        if hb.want_shutdown {
            // Controlled shutdown: fenced now, its leaderships go to other ISR
            // members (the fence rule), and it is not unfenced while it stops.
            if !reg.fenced {
                let r = MetadataRecord::FenceBroker {
                    id: hb.broker,
                    epoch: hb.epoch,
                };
                if !self.in_flight.contains(&r) {
                    self.in_flight.push(r.clone());
                    record = Some(r);
                }
            }
        } else if reg.fenced && hb.applied_offset >= reg.epoch {
            let r = MetadataRecord::UnfenceBroker {
                id: hb.broker,
                epoch: hb.epoch,
            };
            if !self.in_flight.contains(&r) {
                self.in_flight.push(r.clone());
                record = Some(r);
            }
        }
        (HeartbeatAnswer::Ok { fenced: reg.fenced }, record)
    }

    /// Whether a registration of `id` by the process `incarnation` may go ahead: not
    /// while another process holds the id with a live session (Kafka's
    /// DUPLICATE_BROKER_REGISTRATION), so a second broker started with a taken id,
    /// or a peer claiming another's id, cannot take its place while it is alive.
    /// Unlike Kafka, a session this controller only granted when it took over (it
    /// has not heard the holder since) does not block: a cluster of one restarting
    /// would otherwise wait a whole session for itself; a live holder heartbeats
    /// within an interval, learns its epoch is stale and the conflict is logged.
    pub fn may_register(
        &self,
        md: &ClusterMetadata,
        id: BrokerId,
        incarnation: u64,
        now_ms: u64,
    ) -> bool {
        let Some(reg) = md.registrations.get(&id) else {
            return true;
        };
        if reg.incarnation == incarnation || reg.fenced {
            return true;
        }
        if self.heard.get(&id) != Some(&reg.epoch) {
            return true;
        }
        match self.contact.get(&id) {
            Some((epoch, at)) if *epoch == reg.epoch => {
                now_ms.saturating_sub(*at) > self.session_timeout_ms
            }
            _ => true,
        }
    }

    /// A registration was applied: its session starts now.
    pub fn registered(&mut self, id: BrokerId, epoch: u64, now_ms: u64) {
        self.contact.insert(id, (epoch, now_ms));
    }

    /// Fences for every unfenced broker whose session ran out.
    pub fn expire(&mut self, md: &ClusterMetadata, now_ms: u64) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        for (id, reg) in &md.registrations {
            if reg.fenced {
                continue;
            }
            let last = match self.contact.get(id) {
                Some((epoch, at)) if *epoch == reg.epoch => *at,
                // Unknown to this controller: its session starts now.
                _ => {
                    self.contact.insert(*id, (reg.epoch, now_ms));
                    now_ms
                }
            };
            if now_ms.saturating_sub(last) > self.session_timeout_ms {
                let r = MetadataRecord::FenceBroker {
                    id: *id,
                    epoch: reg.epoch,
                };
                if !self.in_flight.contains(&r) {
                    self.in_flight.push(r.clone());
                    out.push(r);
                }
            }
        }
        out
    }

    /// A record committed (or its proposal failed): it is no longer in flight.
    pub fn settled(&mut self, record: &MetadataRecord) {
        self.in_flight.retain(|r| r != record);
    }

    /// Of `records` (decisions the controller reached elsewhere, such as unclean
    /// elections), those not proposed already; they count as in flight from now,
    /// until `settled` sees them applied or their proposal fails.
    pub fn not_in_flight(&mut self, records: Vec<MetadataRecord>) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        for r in records {
            if !self.in_flight.contains(&r) {
                self.in_flight.push(r.clone());
                out.push(r);
            }
        }
        out
    }

    /// Forgets every decision in flight (the node lost leadership).
    pub fn step_down(&mut self) {
        self.in_flight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::records::Applied;
    use crate::metadata::BrokerInfo;

    fn md_with(ids: &[i32]) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        for (n, id) in ids.iter().enumerate() {
            md.apply(
                n as u64 + 1,
                &MetadataRecord::RegisterBroker {
                    broker: BrokerInfo {
                        id: BrokerId(*id),
                        host: "h".into(),
                        port: 1,
                        shards: 1,
                        kafka: None,
                    },
                    incarnation: 1,
                },
            );
        }
        md
    }

    #[test]
    fn a_caught_up_broker_is_unfenced_once_and_a_silent_one_is_fenced() {
        let mut md = md_with(&[1, 2]);
        let mut s = BrokerSessions::new(SESSION_TIMEOUT_MS);
        s.take_over(&md, 0);
        let hb = |b: i32, epoch: u64, applied: u64| Heartbeat {
            broker: BrokerId(b),
            epoch,
            applied_offset: applied,
            want_shutdown: false,
        };
        // Not caught up with its own registration: stays fenced.
        assert_eq!(s.heartbeat(&md, hb(2, 2, 1), 100).1, None);
        let (a, r) = s.heartbeat(&md, hb(2, 2, 2), 200);
        assert_eq!(a, HeartbeatAnswer::Ok { fenced: true });
        let r = r.unwrap();
        // Asked again before it committed: not proposed twice.
        assert_eq!(s.heartbeat(&md, hb(2, 2, 2), 300).1, None);
        assert_eq!(md.apply(3, &r), Applied::Changed);
        s.settled(&r);
        assert_eq!(
            s.heartbeat(&md, hb(2, 9, 3), 400).0,
            HeartbeatAnswer::StaleEpoch
        );
        // Broker 1 never heartbeats but is fenced already: nothing to do. Broker 2
        // was last heard at 300 ms (the stale heartbeat is no contact): fenced once
        // its session ran out.
        assert!(s.expire(&md, 300 + SESSION_TIMEOUT_MS).is_empty());
        let f = s.expire(&md, 301 + SESSION_TIMEOUT_MS);
        assert_eq!(
            f,
            vec![MetadataRecord::FenceBroker {
                id: BrokerId(2),
                epoch: 2
            }]
        );
        assert!(s.expire(&md, 302 + SESSION_TIMEOUT_MS).is_empty());
    }

    #[test]
    fn a_decision_reached_elsewhere_is_proposed_once_until_settled() {
        let mut s = BrokerSessions::new(SESSION_TIMEOUT_MS);
        let r = MetadataRecord::DeleteTopic { name: "t".into() };
        assert_eq!(s.not_in_flight(vec![r.clone()]), vec![r.clone()]);
        assert!(s.not_in_flight(vec![r.clone()]).is_empty(), "in flight");
        s.settled(&r);
        assert_eq!(s.not_in_flight(vec![r.clone()]), vec![r.clone()]);
        s.step_down();
        assert_eq!(s.not_in_flight(vec![r.clone()]), vec![r]);
    }

    #[test]
    fn a_broker_that_wants_to_shut_down_is_fenced_at_once_and_stays_fenced() {
        let mut md = md_with(&[1]);
        md.apply(
            2,
            &MetadataRecord::UnfenceBroker {
                id: BrokerId(1),
                epoch: 1,
            },
        );
        let mut s = BrokerSessions::new(SESSION_TIMEOUT_MS);
        s.take_over(&md, 0);
        let hb = |want_shutdown| Heartbeat {
            broker: BrokerId(1),
            epoch: 1,
            applied_offset: 2,
            want_shutdown,
        };
        assert_eq!(s.heartbeat(&md, hb(false), 10).1, None);
        // Long before its session ends: fenced, once.
        let fence = MetadataRecord::FenceBroker {
            id: BrokerId(1),
            epoch: 1,
        };
        let (answer, record) = s.heartbeat(&md, hb(true), 20);
        assert_eq!(answer, HeartbeatAnswer::Ok { fenced: false });
        assert_eq!(record, Some(fence.clone()));
        assert_eq!(s.heartbeat(&md, hb(true), 30).1, None, "in flight");
        md.apply(3, &fence);
        s.settled(&fence);
        // Caught up and fenced, it is not unfenced while it still wants to stop.
        let (answer, record) = s.heartbeat(&md, hb(true), 40);
        assert_eq!(
            (answer, record),
            (HeartbeatAnswer::Ok { fenced: true }, None)
        );
    }

    #[test]
    fn a_live_broker_id_cannot_be_taken_by_another_process() {
        let mut md = md_with(&[1]);
        md.apply(
            2,
            &MetadataRecord::UnfenceBroker {
                id: BrokerId(1),
                epoch: 1,
            },
        );
        let mut s = BrokerSessions::new(1_000);
        s.take_over(&md, 0);
        // Not heard since the take-over: a restarted broker may register at once.
        assert!(s.may_register(&md, BrokerId(1), 2, 10));
        let hb = Heartbeat {
            broker: BrokerId(1),
            epoch: 1,
            applied_offset: 2,
            want_shutdown: false,
        };
        s.heartbeat(&md, hb, 10);
        assert!(
            s.may_register(&md, BrokerId(1), 1, 20),
            "the same process retries"
        );
        assert!(
            !s.may_register(&md, BrokerId(1), 2, 20),
            "another process, live id"
        );
        assert!(
            s.may_register(&md, BrokerId(1), 2, 1_011),
            "the session ran out"
        );
        assert!(s.may_register(&md, BrokerId(9), 2, 20), "a new id");
    }

    #[test]
    fn a_new_controller_gives_every_broker_a_full_session() {
        let mut md = md_with(&[1]);
        md.apply(
            2,
            &MetadataRecord::UnfenceBroker {
                id: BrokerId(1),
                epoch: 1,
            },
        );
        let mut s = BrokerSessions::new(1_000);
        s.take_over(&md, 50_000);
        assert!(s.expire(&md, 51_000).is_empty());
        assert_eq!(s.expire(&md, 51_001).len(), 1);
    }
}
