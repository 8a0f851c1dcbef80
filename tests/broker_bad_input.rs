//! Acceptance 5 and 6 of the broker issue: hostile frames never hurt the broker or
//! other clients, and the CLI reports every user error clearly with a non-zero exit.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::{cli_with_input, fails, ok, rss_kib, Broker};
use ringlog::schema::frame::encode_frame;
use ringlog::schema::wire::{BodyT, EnvelopeT, PayloadRangeT, ProducePartitionT, ProduceRequestT};
use ringlog::schema::BatchBuilder;

/// Frames sent by the hostile clients in all.
const BAD_FRAMES: usize = 100_000;
const BAD_CLIENTS: usize = 4;
/// The broker's resident memory may not exceed this during the attack.
const RSS_LIMIT_KIB: u64 = 512 * 1024;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn produce_frame(topic: &str, batch: &[u8], range: PayloadRangeT) -> Vec<u8> {
    let env = EnvelopeT {
        correlation_id: 9,
        body: BodyT::ProduceRequest(Box::new(ProduceRequestT {
            acks: 1,
            timeout_ms: 1000,
            partitions: Some(vec![ProducePartitionT {
                topic: topic.into(),
                partition: 0,
                records: Some(range),
            }]),
        })),
    };
    encode_frame(&env, batch).to_vec()
}

/// One hostile frame (or connection-ending abuse); `true` if the connection must be
/// reopened after it.
fn bad_frame(rng: &mut XorShift, good_batch: &[u8]) -> (Vec<u8>, bool) {
    let len = good_batch.len() as u32;
    match rng.below(9) {
        // Garbage header of a plausible size.
        0 => {
            let n = 8 + rng.below(200);
            let mut f = (n as u32).to_le_bytes().to_vec();
            f.extend(((n - 4) as u32).to_le_bytes());
            f.extend((0..n - 4).map(|_| rng.next() as u8));
            (f, false)
        }
        // header_len larger than the frame.
        1 => {
            let mut f = 12u32.to_le_bytes().to_vec();
            f.extend(1000u32.to_le_bytes());
            f.extend([0u8; 8]);
            (f, false)
        }
        // A valid produce frame with one byte flipped anywhere.
        2 => {
            let mut f = produce_frame(
                "bad",
                good_batch,
                PayloadRangeT {
                    offset: 0,
                    length: len,
                },
            );
            let at = 8 + rng.below(f.len() - 8);
            f[at] ^= 1 << rng.below(8);
            (f, false)
        }
        // Payload range out of bounds.
        3 => (
            produce_frame(
                "bad",
                good_batch,
                PayloadRangeT {
                    offset: 5,
                    length: len,
                },
            ),
            false,
        ),
        // A batch with a bad CRC.
        4 => {
            let mut batch = good_batch.to_vec();
            let last = batch.len() - 1;
            batch[last] ^= 0xff;
            (
                produce_frame(
                    "bad",
                    &batch,
                    PayloadRangeT {
                        offset: 0,
                        length: len,
                    },
                ),
                false,
            )
        }
        // A response type sent as a request: unknown API.
        5 => (
            encode_frame(
                &EnvelopeT {
                    correlation_id: 3,
                    body: BodyT::HelloResponse(Box::default()),
                },
                &[],
            )
            .to_vec(),
            false,
        ),
        // Oversized length prefix: the broker answers and closes.
        6 => {
            let mut f = (u32::MAX - rng.below(1000) as u32).to_le_bytes().to_vec();
            f.extend([1, 2, 3, 4]);
            (f, true)
        }
        // A truncated frame, then the connection closes.
        7 => {
            let f = produce_frame(
                "bad",
                good_batch,
                PayloadRangeT {
                    offset: 0,
                    length: len,
                },
            );
            (f[..rng.below(f.len())].to_vec(), true)
        }
        // A valid frame between the bad ones.
        _ => (
            encode_frame(
                &EnvelopeT {
                    correlation_id: 1,
                    body: BodyT::HelloRequest(Box::default()),
                },
                &[],
            )
            .to_vec(),
            false,
        ),
    }
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    // Answers are drained by a thread so the broker never blocks writing them.
    let mut r = s.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
    });
    s
}

#[test]
fn hostile_frames_do_not_hurt_the_broker_or_a_good_client() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::start(&root.path().join("data"), 2, &[]);
    ok(&broker.cli(&["topic", "create", "good", "--partitions", "4"]));
    ok(&broker.cli(&["topic", "create", "bad", "--partitions", "1"]));
    let mut b = BatchBuilder::new();
    b.push(None, Some(Bytes::from_static(b"payload")), &[], 1);
    let good_batch = b.build().unwrap().to_vec();

    let attackers: Vec<_> = (0..BAD_CLIENTS)
        .map(|i| {
            let addr = broker.addr.clone();
            let good_batch = good_batch.clone();
            std::thread::spawn(move || {
                let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
                let mut conn = connect(&addr);
                for _ in 0..BAD_FRAMES / BAD_CLIENTS {
                    let (frame, reopen) = bad_frame(&mut rng, &good_batch);
                    // The broker may close first; that is an allowed answer.
                    if conn.write_all(&frame).is_err() || reopen {
                        let _ = conn.shutdown(std::net::Shutdown::Both);
                        conn = connect(&addr);
                    }
                }
            })
        })
        .collect();

    // Meanwhile a well-behaved client produces and reads back.
    let lines: String = (0..20_000).map(|i| format!("{i}\n")).collect();
    ok(&broker.cli_input(&["produce", "--topic", "good"], lines.as_bytes()));
    let mut peak = rss_kib(broker.pid());
    for a in attackers {
        while !a.is_finished() {
            peak = peak.max(rss_kib(broker.pid()));
            std::thread::sleep(Duration::from_millis(20));
        }
        a.join().unwrap();
    }
    let out = ok(&broker.cli(&[
        "consume",
        "--topic",
        "good",
        "--from-beginning",
        "--max-messages",
        "20000",
    ]));
    let mut got: Vec<usize> = out.lines().map(|l| l.parse().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..20_000).collect::<Vec<_>>(),
        "the good client lost nothing"
    );
    // Mutations that left the batch valid (a flipped acks or timeout byte) were
    // appended; everything stored decodes to the one valid record.
    let out = ok(&broker.cli(&[
        "consume",
        "--topic",
        "bad",
        "--from-beginning",
        "--timeout-ms",
        "1000",
    ]));
    assert!(
        out.lines().all(|l| l == "payload"),
        "only valid batches stored"
    );
    eprintln!("broker peak RSS during the attack: {peak} KiB");
    assert!(peak < RSS_LIMIT_KIB, "broker RSS {peak} KiB");
    let mut broker = broker;
    assert!(
        broker.child.try_wait().unwrap().is_none(),
        "broker alive:\n{}",
        broker.log()
    );
    assert!(!broker.log().contains("panicked"), "{}", broker.log());
    assert!(broker.terminate().success());
}

#[test]
fn cli_errors_are_clear_and_exit_non_zero() {
    let root = tempfile::tempdir().unwrap();
    let broker = Broker::start(
        &root.path().join("data"),
        1,
        &[
            "--set",
            "message.max.bytes=2048",
            "--set",
            "auto.create.topics.enable=false",
        ],
    );
    ok(&broker.cli(&["topic", "create", "t", "--partitions", "2"]));

    let e = fails(&broker.cli(&["consume", "--topic", "nope", "--max-messages", "1"]));
    assert!(e.contains("unknown topic"), "{e}");
    let e = fails(&broker.cli_input(&["produce", "--topic", "nope"], b"x\n"));
    assert!(e.contains("unknown topic"), "{e}");
    let e = fails(&broker.cli_input(&["produce", "--topic", "t", "--partition", "7"], b"x\n"));
    assert!(e.contains("partition 7 is out of range"), "{e}");
    let big = format!("{}\n", "x".repeat(4000));
    let e = fails(&broker.cli_input(&["produce", "--topic", "t"], big.as_bytes()));
    assert!(
        e.contains("MESSAGE_TOO_LARGE") && e.contains("message.max.bytes"),
        "{e}"
    );
    let e = fails(&broker.cli(&[
        "consume",
        "--topic",
        "t",
        "--partition",
        "0",
        "--offset",
        "999",
        "--max-messages",
        "1",
    ]));
    assert!(e.contains("OFFSET_OUT_OF_RANGE"), "{e}");
    let e = fails(&broker.cli(&["topic", "create", "t", "--partitions", "1"]));
    assert!(e.contains("TOPIC_ALREADY_EXISTS"), "{e}");
    let e = fails(&broker.cli(&["topic", "create", "r3", "--partitions", "1", "-r", "3"]));
    assert!(e.contains("INVALID_REPLICATION_FACTOR"), "{e}");

    // Unreachable broker: a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = fails(&cli_with_input(
        &[
            "topic".into(),
            "list".into(),
            "-b".into(),
            format!("127.0.0.1:{port}"),
        ],
        None,
    ));
    assert!(e.contains("cannot connect"), "{e}");

    // Invalid config key and value: serve refuses to start.
    let dir = root.path().join("other");
    let e = fails(&cli_with_input(
        &[
            "serve".into(),
            "--data-dir".into(),
            dir.display().to_string(),
            "--set".into(),
            "log.dirz=x".into(),
        ],
        None,
    ));
    assert!(e.contains("unknown config key \"log.dirz\""), "{e}");
    let cfg = root.path().join("bad.toml");
    std::fs::write(&cfg, "num.partitions = \"many\"\n").unwrap();
    let e = fails(&cli_with_input(
        &["serve".into(), "--config".into(), cfg.display().to_string()],
        None,
    ));
    assert!(e.contains("num.partitions"), "{e}");
    // Bad CLI arguments.
    let e = fails(&broker.cli(&["produce", "--topic", "t", "--acks", "2"]));
    assert!(e.contains("expected all, 1 or 0"), "{e}");
}
