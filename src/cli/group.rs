//! `ringlog group list | describe | reset-offsets | delete`: consumer groups, with the
//! habits of Kafka's `kafka-consumer-groups` (a dry run unless `--execute`).

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use ringlog::client::group::{
    commit_offsets, delete_group, describe_group, fetch_committed, list_groups,
};
use ringlog::client::{Client, ClientError};
use ringlog::schema::wire::{ErrorCode, OffsetCommitPartitionT};

use super::{block_on, Connect};

#[derive(clap::Subcommand)]
pub enum GroupCommand {
    /// List the consumer groups.
    List {
        #[command(flatten)]
        connect: Connect,
    },
    /// Show a group's state and members, and per partition its committed offset, log
    /// end and lag.
    Describe {
        #[command(flatten)]
        connect: Connect,
        group: String,
    },
    /// Move a group's committed offsets on a topic. Prints the plan; changes nothing
    /// without --execute, and refuses while the group has members.
    ResetOffsets(ResetArgs),
    /// Delete a group and its committed offsets (only when it has no members).
    Delete {
        #[command(flatten)]
        connect: Connect,
        group: String,
    },
}

#[derive(clap::Args)]
pub struct ResetArgs {
    #[command(flatten)]
    connect: Connect,
    group: String,
    #[arg(long)]
    topic: String,
    #[arg(long, group = "to")]
    to_earliest: bool,
    #[arg(long, group = "to")]
    to_latest: bool,
    #[arg(long, group = "to")]
    to_offset: Option<i64>,
    /// ISO 8601, e.g. 2026-11-21T10:00:00Z or 2026-11-21T11:00:00.000+01:00 (UTC
    /// without a zone): the first offset at or after that time.
    #[arg(long, group = "to", value_parser = parse_datetime_ms)]
    to_datetime: Option<i64>,
    /// Apply the plan (default: print it only).
    #[arg(long)]
    execute: bool,
}

pub fn run(cmd: GroupCommand) -> anyhow::Result<i32> {
    match cmd {
        GroupCommand::List { connect } => block_on(move || async move {
            let client = Client::connect(&connect.bootstrap_server).await?;
            let listed = list_groups(&client).await?;
            println!("{:<32} {:<20} {:>7}", "GROUP", "STATE", "MEMBERS");
            for (id, e) in &listed.unreachable {
                eprintln!("warning: broker {id} was not asked for its groups: {e}");
            }
            for g in listed.groups {
                println!(
                    "{:<32} {:<20} {:>7}",
                    g.group,
                    g.state.unwrap_or_default(),
                    g.members
                );
            }
            Ok(0)
        }),
        GroupCommand::Describe { connect, group } => block_on(move || async move {
            let client = Client::connect(&connect.bootstrap_server).await?;
            describe(&client, &group).await
        }),
        GroupCommand::ResetOffsets(args) => block_on(move || async move {
            let client = Client::connect(&args.connect.bootstrap_server).await?;
            reset(&client, &args).await
        }),
        GroupCommand::Delete { connect, group } => block_on(move || async move {
            let client = Client::connect(&connect.bootstrap_server).await?;
            match delete_group(&client, &group).await {
                Ok(()) => {
                    println!("Deleted consumer group {group:?}.");
                    Ok(0)
                }
                Err(e) if e.code() == Some(ErrorCode::NON_EMPTY_GROUP) => {
                    bail!("group {group:?} has active members; stop its consumers first")
                }
                Err(e) => Err(e).with_context(|| format!("cannot delete group {group:?}")),
            }
        }),
    }
}

async fn describe(client: &Client, group: &str) -> anyhow::Result<i32> {
    let d = match describe_group(client, group).await {
        Err(e) if e.code() == Some(ErrorCode::GROUP_ID_NOT_FOUND) => {
            bail!("consumer group {group:?} does not exist")
        }
        other => other.with_context(|| format!("cannot describe group {group:?}"))?,
    };
    let members = d.members.unwrap_or_default();
    println!(
        "Group {group}: state {}, generation {}, protocol {}, {} member(s)",
        d.state.unwrap_or_default(),
        d.generation,
        d.protocol.unwrap_or_else(|| "-".into()),
        members.len()
    );
    // Owner of each partition in the current generation.
    let mut owner: BTreeMap<(String, i32), (String, String)> = BTreeMap::new();
    for m in &members {
        for a in m.assignment.clone().unwrap_or_default() {
            for p in a.partitions.unwrap_or_default() {
                owner.insert(
                    (a.topic.clone(), p),
                    (m.member_id.clone(), m.client_id.clone().unwrap_or_default()),
                );
            }
        }
    }
    let committed = fetch_committed(client, group, Vec::new()).await?;
    let mut rows: BTreeMap<(String, i32), i64> = committed;
    for key in owner.keys() {
        rows.entry(key.clone()).or_insert(-1);
    }
    println!(
        "{:<24} {:>9} {:>15} {:>15} {:>10}  {:<40} CLIENT-ID",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID"
    );
    for ((topic, partition), current) in rows {
        let end = client.list_offset(&topic, partition, -1).await.ok();
        let lag = match (end, current) {
            (Some(e), c) if c >= 0 => (e - c).max(0).to_string(),
            _ => "-".into(),
        };
        let (member, client_id) = owner
            .get(&(topic.clone(), partition))
            .cloned()
            .unwrap_or_else(|| ("-".into(), "-".into()));
        println!(
            "{:<24} {:>9} {:>15} {:>15} {:>10}  {:<40} {}",
            topic,
            partition,
            if current >= 0 {
                current.to_string()
            } else {
                "-".into()
            },
            end.map_or("-".into(), |e| e.to_string()),
            lag,
            member,
            client_id
        );
    }
    Ok(0)
}

async fn reset(client: &Client, args: &ResetArgs) -> anyhow::Result<i32> {
    let topic = client
        .topic(&args.topic, false)
        .await
        .with_context(|| format!("cannot reset offsets on topic {:?}", args.topic))?;
    let active = match describe_group(client, &args.group).await {
        Ok(d) => d.members.map_or(0, |m| m.len()),
        Err(e) if e.code() == Some(ErrorCode::GROUP_ID_NOT_FOUND) => 0,
        Err(e) => return Err(e).context("cannot read the group's state"),
    };
    let current = fetch_committed(client, &args.group, Vec::new()).await?;
    let mut plan = Vec::new();
    for p in 0..topic.partitions.len() as i32 {
        let earliest = client.list_offset(&args.topic, p, -2).await?;
        let latest = client.list_offset(&args.topic, p, -1).await?;
        let target = if args.to_earliest {
            earliest
        } else if args.to_latest {
            latest
        } else if let Some(o) = args.to_offset {
            // As Kafka does: an offset outside the log is moved to its nearest end.
            o.clamp(earliest, latest)
        } else if let Some(ts) = args.to_datetime {
            match client.list_offset(&args.topic, p, ts).await? {
                o if o >= 0 => o,
                _ => latest,
            }
        } else {
            bail!("say where to: --to-earliest, --to-latest, --to-offset or --to-datetime");
        };
        let now = current.get(&(args.topic.clone(), p)).copied().unwrap_or(-1);
        plan.push((p, now, target));
    }
    println!(
        "{:<24} {:>9} {:>15} {:>15}",
        "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"
    );
    for (p, now, target) in &plan {
        println!(
            "{:<24} {:>9} {:>15} {:>15}",
            args.topic,
            p,
            if *now >= 0 {
                now.to_string()
            } else {
                "-".into()
            },
            target
        );
    }
    if !args.execute {
        println!("Dry run: nothing changed. Add --execute to apply.");
        return Ok(0);
    }
    if active > 0 {
        bail!(
            "group {:?} has {active} active member(s); stop its consumers before resetting offsets",
            args.group
        );
    }
    let partitions = plan
        .iter()
        .map(|(p, _, target)| OffsetCommitPartitionT {
            topic: args.topic.clone(),
            partition: *p,
            offset: *target,
            metadata: None,
        })
        .collect();
    match commit_offsets(client, &args.group, "", -1, partitions).await {
        Ok(()) => {
            println!(
                "Offsets of group {:?} on {:?} reset.",
                args.group, args.topic
            );
            Ok(0)
        }
        Err(ClientError::Broker {
            code: ErrorCode::UNKNOWN_MEMBER_ID,
            ..
        }) => bail!(
            "group {:?} has active members; stop its consumers before resetting offsets",
            args.group
        ),
        Err(e) => Err(e).context("cannot commit the new offsets"),
    }
}

/// Milliseconds since the Unix epoch of an ISO 8601 date-time:
/// `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]`, UTC when no zone is given.
pub fn parse_datetime_ms(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?}: expected YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM]");
    let (date, time) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 {
        return Err(bad());
    }
    let num = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let (year, month, day) = (num(d[0])?, num(d[1])?, num(d[2])?);
    // The zone: Z, or a trailing ±HH:MM.
    let (clock, offset_min) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']).filter(|i| *i >= 8) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (h, m) = z[1..].split_once(':').ok_or_else(bad)?;
        (c, sign * (num(h)? * 60 + num(m)?))
    } else {
        (time, 0)
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let t: Vec<&str> = hms.split(':').collect();
    if t.len() != 3 {
        return Err(bad());
    }
    let (h, mi, sec) = (num(t[0])?, num(t[1])?, num(t[2])?);
    let ms = if frac.is_empty() {
        0
    } else {
        let f: String = frac.chars().chain("000".chars()).take(3).collect();
        num(&f)?
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0..61).contains(&sec)
    {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + sec * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_to_unix_milliseconds() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:01.5Z").unwrap(), 1_500);
        // 2000-03-01 is 11,017 days after the epoch.
        assert_eq!(
            parse_datetime_ms("2000-03-01T00:00:00").unwrap(),
            11_017 * 86_400_000
        );
        assert_eq!(
            parse_datetime_ms("2026-11-21T11:00:00.000+01:00").unwrap(),
            parse_datetime_ms("2026-11-21T10:00:00Z").unwrap()
        );
        assert_eq!(
            parse_datetime_ms("2026-11-21T08:30:00-01:30").unwrap(),
            parse_datetime_ms("2026-11-21T10:00:00Z").unwrap()
        );
        for bad in [
            "",
            "2026-11-21",
            "2026-13-01T00:00:00",
            "2026-11-21T25:00:00",
            "x-y-zT1:2:3",
        ] {
            assert!(parse_datetime_ms(bad).is_err(), "{bad}");
        }
    }
}
