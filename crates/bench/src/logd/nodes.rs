//! Three logd nodes answering as one (`--peers`, issue 8 §6), part of `flotilla bench
//! logd`: nodes A, B and C each hold M realistic messages (different seeds, so every
//! request id is on one node only); A is started with `--peers A,B,C`, B and C are plain
//! nodes. The same queries go to A (3 nodes, 3M messages: A asks itself, B and C with
//! `local=1` and merges) and to B alone (one node, M messages), interleaved (the order
//! alternates each round; the first round warms the caches and is not counted):
//!
//! - a rare token: `/api/query?grep=req-…&limit=100` (a request id of B's; 1 match);
//! - a host filter: `/api/query?host=web-07.prod.example.com&limit=1000` (1,000 records);
//! - a count: `/api/query/stats?grep=timeout&limit=0` (every match of a word in 1/8 of
//!   the messages).
//!
//! The figure is the median wall time of the HTTP request, 3 nodes over 1 node (target ≤ 2).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::{LogdProcess, RealisticLog, median, send_realistic, server};
use crate::BenchError;
use crate::cpu_share::CpuQuota;

/// What to run.
#[derive(Debug, Clone)]
pub struct NodesBenchConfig {
    /// The `flotilla` binary.
    pub flotilla: PathBuf,
    /// Messages on each node.
    pub messages_per_node: u64,
    /// Timed rounds of each query (plus one warm-up round).
    pub queries: usize,
    /// Seed of node A's messages (B: seed + 1, C: seed + 2).
    pub seed: u64,
    /// A data directory already holding node A's messages (`messages_per_node` from
    /// [`send_realistic`] with `seed`), used in place (else A is filled too).
    pub node_a_data: Option<PathBuf>,
}

/// One query's figures.
#[derive(Debug, Clone, Serialize)]
pub struct NodeQueryFigures {
    /// What it is.
    pub name: &'static str,
    /// The request (the rare token's differs every round).
    pub request: String,
    /// Median time through one node, ms.
    pub one_node_ms_median: f64,
    /// Median time through node A over the three, ms.
    pub three_nodes_ms_median: f64,
    /// `three_nodes_ms_median / one_node_ms_median` (target ≤ 2).
    pub ratio: f64,
    /// Every timed round, one node, ms.
    pub one_node_ms: Vec<f64>,
    /// Every timed round, three nodes, ms.
    pub three_nodes_ms: Vec<f64>,
    /// Records returned (or counted) by one node, last round.
    pub one_node_matched: u64,
    /// Records returned (or counted) by the three, last round.
    pub three_nodes_matched: u64,
}

/// The multi-node queries with each node held to an equal CPU share.
#[derive(Debug, Clone, Serialize)]
pub struct EqualShareFigures {
    /// Cores each node (and the single node) may use: the machine's cores / 3.
    pub cores_per_node: f64,
    /// Each query.
    pub queries: Vec<NodeQueryFigures>,
    /// The largest ratio.
    pub worst_ratio: f64,
    /// What did not check out in these rounds.
    pub answer_problems: Vec<String>,
}

/// The figures of the multi-node part.
#[derive(Debug, Clone, Serialize)]
pub struct NodesFigures {
    /// Nodes (3).
    pub nodes: usize,
    /// Messages on each.
    pub messages_per_node: u64,
    /// Messages on all.
    pub messages_total: u64,
    /// Seconds to fill the nodes that were filled here (concurrently).
    pub fill_seconds: f64,
    /// Nodes filled here (A is reused from the query part when its size matches).
    pub nodes_filled: usize,
    /// Each query, all nodes sharing the machine's cores.
    pub queries: Vec<NodeQueryFigures>,
    /// The largest ratio of `queries`.
    pub worst_ratio: f64,
    /// The same queries with each node held to an equal share of the cores (what three
    /// machines would show; the target is judged on these when they could be measured).
    pub equal_share: Option<EqualShareFigures>,
    /// Why there are no equal-share figures, if there are none.
    pub equal_share_error: Option<String>,
    /// The three-node count equals the sum of the nodes' own counts, every answer had
    /// the expected number of records, and every node answered.
    pub answers_checked: bool,
    /// What did not check out, if anything.
    pub answer_problems: Vec<String>,
    /// Every target met.
    pub meets_targets: bool,
}

fn count_lines(body: &str) -> u64 {
    body.lines().filter(|l| !l.is_empty()).count() as u64
}

fn matched(body: &str) -> Result<u64, BenchError> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| server(format!("/api/query/stats: {e}")))?;
    v["matched"]
        .as_u64()
        .ok_or_else(|| server(format!("no matched in {body}")))
}

/// Every node in the answer's `x-flotilla-nodes` answered.
fn all_nodes_ok(headers: &[(String, String)], n: usize) -> bool {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(flotilla_logd::peers::NODES_HEADER))
        .and_then(|(_, v)| serde_json::from_str::<Vec<serde_json::Value>>(v).ok())
        .is_some_and(|nodes| nodes.len() == n && nodes.iter().all(|x| x["ok"] == true))
}

/// Times every query through one node (B) and through A over the three; returns the
/// figures and what did not check out.
fn measure(
    config: &NodesBenchConfig,
    [a, b, c]: [&LogdProcess; 3],
    seeds: &[u64; 3],
) -> Result<(Vec<NodeQueryFigures>, Vec<String>), BenchError> {
    let n = config.messages_per_node;
    let mut rng = SmallRng::seed_from_u64(config.seed ^ 0x3_0DE5);
    let mut problems: Vec<String> = Vec::new();
    let kinds: [&'static str; 3] = ["rare token", "host, limit 1000", "count a common word"];
    let mut figures = Vec::new();
    for name in kinds {
        let mut one_ms = Vec::new();
        let mut three_ms = Vec::new();
        let (mut one_matched, mut three_matched) = (0, 0);
        let mut request = String::new();
        for round in 0..=config.queries.max(1) {
            request = match name {
                "rare token" => format!(
                    "/api/query?grep={}&limit=100",
                    RealisticLog::token(seeds[1], rng.random_range(0..n))
                ),
                "host, limit 1000" => "/api/query?host=web-07.prod.example.com&limit=1000".into(),
                _ => "/api/query/stats?grep=timeout&limit=0".into(),
            };
            let counting = request.starts_with("/api/query/stats");
            let timed = |node: &LogdProcess| -> Result<(f64, u64, bool), BenchError> {
                let t = Instant::now();
                let (body, headers) = node.get(&request)?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let (count, ok) = if counting {
                    // The statistics carry the nodes in the body.
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let ok = v["nodes"]
                        .as_array()
                        .is_some_and(|x| x.len() == 3 && x.iter().all(|n| n["ok"] == true));
                    (matched(&body)?, ok)
                } else {
                    (count_lines(&body), all_nodes_ok(&headers, 3))
                };
                Ok((ms, count, ok))
            };
            let (one, three) = if round % 2 == 0 {
                let one = timed(b)?;
                (one, timed(a)?)
            } else {
                let three = timed(a)?;
                (timed(b)?, three)
            };
            if !three.2 {
                problems.push(format!("{name}: not every node answered"));
            }
            let expected = match name {
                "rare token" => Some(1),
                "host, limit 1000" => Some(1000),
                _ => None,
            };
            if let Some(e) = expected {
                if one.1 != e || three.1 != e {
                    problems.push(format!(
                        "{name}: {} and {} records, expected {e}",
                        one.1, three.1
                    ));
                }
            } else if round == 0 {
                // The sum of the nodes' own counts.
                let own = |node: &LogdProcess| -> Result<u64, BenchError> {
                    matched(&node.get(&format!("{request}&local=1"))?.0)
                };
                let owns = [own(a)?, own(b)?, own(c)?];
                if three.1 != owns.iter().sum::<u64>() || one.1 != owns[1] {
                    problems.push(format!(
                        "{name}: 3 nodes counted {}, one {}; each alone {owns:?}",
                        three.1, one.1
                    ));
                }
            }
            (one_matched, three_matched) = (one.1, three.1);
            if round > 0 {
                one_ms.push(one.0);
                three_ms.push(three.0);
            }
        }
        let one_node_ms_median = median(&one_ms);
        let three_nodes_ms_median = median(&three_ms);
        figures.push(NodeQueryFigures {
            name,
            request,
            one_node_ms_median,
            three_nodes_ms_median,
            ratio: three_nodes_ms_median / one_node_ms_median.max(1e-9),
            one_node_ms: one_ms,
            three_nodes_ms: three_ms,
            one_node_matched: one_matched,
            three_nodes_matched: three_matched,
        });
    }
    Ok((figures, problems))
}

/// Runs the multi-node part.
pub fn run_nodes(config: &NodesBenchConfig, tmp: &Path) -> Result<NodesFigures, BenchError> {
    let n = config.messages_per_node;
    let ports: Vec<u16> = (0..3)
        .map(|_| flotilla_testkit::free_port().map_err(server))
        .collect::<Result<_, _>>()?;
    let peers = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let seeds = [config.seed, config.seed + 1, config.seed + 2];
    eprintln!("bench logd: 3 nodes of {n} messages each");
    let started = Instant::now();
    let mut fillers = Vec::new();
    let mut nodes_filled = 0;
    for (k, name) in ["a", "b", "c"].into_iter().enumerate() {
        let reuse = if k == 0 {
            config.node_a_data.clone()
        } else {
            None
        };
        let data = reuse
            .clone()
            .unwrap_or_else(|| tmp.join(format!("node-{name}")));
        let fill = reuse.is_none();
        nodes_filled += usize::from(fill);
        let flotilla = config.flotilla.clone();
        let http = format!("127.0.0.1:{}", ports[k]);
        let extra: Vec<String> = if k == 0 {
            vec!["--peers".into(), peers.clone()]
        } else {
            Vec::new()
        };
        let seed = seeds[k];
        fillers.push(std::thread::spawn(
            move || -> Result<LogdProcess, BenchError> {
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                if fill {
                    // Filled, then stopped (sealed) and started again, as node A's directory
                    // was: every node answers from sealed segments.
                    let logd =
                        LogdProcess::spawn(&flotilla, &data, "tcp://127.0.0.1:0", &http, &[])?;
                    send_realistic(logd.tcp, seed, n, 2)?;
                    logd.wait_for_records(n, Duration::from_secs(1800))?;
                    logd.stop()?;
                }
                let logd =
                    LogdProcess::spawn(&flotilla, &data, "tcp://127.0.0.1:0", &http, &extra)?;
                let stored = logd.stats()?["stored_records"].as_u64().unwrap_or(0);
                if stored != n {
                    return Err(server(format!(
                        "node {}: {stored} records in sealed segments, expected {n}",
                        data.display()
                    )));
                }
                Ok(logd)
            },
        ));
    }
    let mut nodes = Vec::new();
    for f in fillers {
        nodes.push(
            f.join()
                .map_err(|_| server("a filling thread panicked"))??,
        );
    }
    let fill_seconds = started.elapsed().as_secs_f64();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    let shared = measure(config, [a, b, c], &seeds)?;
    // The same queries with each node held to an equal share of the machine's cores (the
    // single node B to the same share), as three machines of that size would run them.
    let cores = crate::affinity::allowed_cpus()
        .map(|c| c.len().max(1))
        .unwrap_or(1) as f64;
    let share = cores / 3.0;
    let quotas: Result<Vec<CpuQuota>, String> = ["a", "b", "c"]
        .iter()
        .zip([a, b, c])
        .map(|(name, node)| {
            let q = CpuQuota::create(
                &format!("flotilla-bench-node-{name}-{}", std::process::id()),
                share,
            )?;
            q.add(node.pid())?;
            Ok(q)
        })
        .collect();
    let (equal_share, equal_share_error) = match quotas {
        Ok(quotas) => {
            eprintln!("bench logd: the same queries, each node held to {share:.2} cores");
            let m = measure(config, [a, b, c], &seeds)?;
            drop(quotas);
            (
                Some(EqualShareFigures {
                    cores_per_node: share,
                    worst_ratio: m.0.iter().map(|q| q.ratio).fold(0.0, f64::max),
                    queries: m.0,
                    answer_problems: m.1,
                }),
                None,
            )
        }
        Err(e) => {
            eprintln!("bench logd: no equal CPU shares for the nodes: {e}");
            (None, Some(e))
        }
    };
    let (figures, mut problems) = shared;
    if let Some(e) = &equal_share {
        problems.extend(e.answer_problems.iter().cloned());
    }
    for node in nodes {
        node.stop()?;
    }
    let worst_ratio = figures.iter().map(|q| q.ratio).fold(0.0, f64::max);
    let judged = equal_share.as_ref().map_or(worst_ratio, |e| e.worst_ratio);
    Ok(NodesFigures {
        nodes: 3,
        messages_per_node: n,
        messages_total: 3 * n,
        fill_seconds,
        nodes_filled,
        queries: figures,
        worst_ratio,
        answers_checked: problems.is_empty(),
        meets_targets: problems.is_empty() && judged <= 2.0,
        equal_share,
        equal_share_error,
        answer_problems: problems,
    })
}
