//! A fuzzer that runs on stable Rust, kept with the code it attacks.
//!
//! ```text
//! cargo run --release -p hyparview_fuzz -- --seconds 20 [--seed N]
//! cargo run --release -p hyparview_fuzz -- --replay TARGET:CASE
//! ```
//! Targets, in turn: the frame decoder, the channel's records, the
//! listener's and the dialer's handshake machines (fed mutated versions of
//! real handshakes), and the protocol core fed adversarial message
//! sequences. Every case has its own seed; a panic prints the target and
//! case so `--replay` reproduces it, and the run exits non-zero.
//!
//! It is a mutation fuzzer, not coverage-guided: cheap enough for CI, and
//! a long run (SECURITY.md) covers far more cases than a unit test can.

mod core;
mod transport;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::{Duration, Instant};

type Target = fn(&mut SmallRng);

const TARGETS: [(&str, Target); 5] = [
    ("decoder", transport::decoder),
    ("records", transport::records),
    ("responder", transport::responder),
    ("initiator", transport::initiator),
    ("core", core::node),
];

struct Args {
    seconds: u64,
    seed: u64,
    replay: Option<(String, u64)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 10,
        seed: rand::random(),
        replay: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => args.seconds = value()?.parse().map_err(|_| "bad --seconds")?,
            "--seed" => args.seed = value()?.parse().map_err(|_| "bad --seed")?,
            "--replay" => {
                let v = value()?;
                let (t, c) = v.split_once(':').ok_or("--replay TARGET:CASE")?;
                args.replay = Some((t.to_string(), c.parse().map_err(|_| "bad case")?));
            }
            "-h" | "--help" => {
                return Err(
                    "usage: hyparview_fuzz [--seconds N] [--seed N] [--replay TARGET:CASE]".into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn run_case(name: &str, target: Target, case: u64) -> bool {
    let ok = catch_unwind(AssertUnwindSafe(|| {
        target(&mut SmallRng::seed_from_u64(case));
    }))
    .is_ok();
    if !ok {
        eprintln!("PANIC in target {name}: reproduce with --replay {name}:{case}");
    }
    ok
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some((name, case)) = args.replay {
        let Some((_, target)) = TARGETS.iter().find(|(n, _)| *n == name) else {
            eprintln!("unknown target {name}");
            return ExitCode::from(2);
        };
        return if run_case(&name, *target, case) {
            println!("{name}:{case} ok");
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    println!(
        "fuzzing for {} s, seed {} (pass --seed to repeat this run)",
        args.seconds, args.seed
    );
    let mut rng = SmallRng::seed_from_u64(args.seed);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut counts = [0u64; TARGETS.len()];
    let mut failed = false;
    while Instant::now() < deadline && !failed {
        for (i, (name, target)) in TARGETS.iter().enumerate() {
            // A small batch per target between clock reads.
            for _ in 0..16 {
                let case: u64 = rng.gen();
                counts[i] += 1;
                if !run_case(name, *target, case) {
                    failed = true;
                    break;
                }
            }
            if failed {
                break;
            }
        }
    }
    let summary: Vec<String> = TARGETS
        .iter()
        .zip(counts)
        .map(|((n, _), c)| format!("{n} {c}"))
        .collect();
    println!("cases run: {}", summary.join(", "));
    if failed {
        ExitCode::FAILURE
    } else {
        println!("no panics");
        ExitCode::SUCCESS
    }
}

/// Byte-level mutations of a valid input.
pub fn mutate(rng: &mut SmallRng, mut b: Vec<u8>) -> Vec<u8> {
    let rounds = rng.gen_range(1..=4);
    for _ in 0..rounds {
        let len = b.len();
        match rng.gen_range(0..8) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                b[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                b[i] = rng.gen();
            }
            2 => {
                let i = rng.gen_range(0..=len);
                let n = rng.gen_range(1..64);
                let junk: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                b.splice(i..i, junk);
            }
            3 if len > 0 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..=len.min(i + 64));
                b.drain(i..j);
            }
            4 => b.truncate(rng.gen_range(0..=len)),
            5 if len > 0 => {
                // Duplicate a chunk (replays inside a stream).
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..=len);
                let chunk = b[i..j].to_vec();
                let at = rng.gen_range(0..=b.len());
                b.splice(at..at, chunk);
            }
            6 if len >= 2 => {
                // Extreme values where length fields tend to be.
                let i = rng.gen_range(0..len - 1);
                let v: [u8; 2] = *[[0xff, 0xff], [0, 0], [0x7f, 0xff], [0, 1]]
                    .get(rng.gen_range(0..4))
                    .unwrap_or(&[0, 0]);
                b[i..i + 2].copy_from_slice(&v);
            }
            _ => {
                let n = rng.gen_range(0..256);
                b = (0..n).map(|_| rng.gen()).collect();
            }
        }
    }
    b
}
