//! The balance, shown: how clients spread over servers with the real choice code
//! ([`flotilla_balance::Balancer`], [`flotilla_balance::pick_uniform`]) under several ways
//! of choosing, and what happens when a server dies.
//!
//! - **os-seeded** (flotilla): each client seeds its balancer from its own entropy (here
//!   derived from the run's seed per client, as the OS would give each its own) and picks
//!   uniformly. For N clients over K servers each server's count is binomial: mean N/K,
//!   standard deviation σ = sqrt(N (1/K)(1 - 1/K)).
//! - **time-seeded**: the same code seeded with the start time in seconds, the classic
//!   mistake: every client started in the same second picks the same server.
//! - **dns-round-robin**: every client asks one of a few caching resolvers; a resolver
//!   caches the rotated answer for its TTL and every client takes the first address, so a
//!   whole resolver's population lands on one server.
//! - **power-of-two**: each client draws two servers at random and joins the less loaded
//!   (it needs to know the loads; shown for comparison).
//!
//! Clients arrive evenly over `arrival`; the report gives each server's count, the worst
//! deviation in σ, max/mean over time, and, after the most loaded server dies, where its
//! clients went (each strategy's own failover: flotilla's balancer picks another server at
//! random; a time-seeded balancer agrees with its whole second; a DNS client takes the next
//! address of the cached answer).

use std::fmt::Write as _;
use std::time::Duration;

use flotilla_balance::{BackoffConfig, Balancer, Decision, pick_uniform};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;

use crate::fleet::derive_seed;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct BalanceScenario {
    /// Everything random comes from it.
    pub seed: u64,
    /// Clients.
    pub clients: usize,
    /// Servers (front-ends).
    pub servers: usize,
    /// Clients arrive evenly over this long.
    pub arrival: Duration,
    /// Caching resolvers the DNS clients are spread over.
    pub resolvers: usize,
    /// How long a resolver keeps its answer.
    pub dns_ttl: Duration,
}

impl Default for BalanceScenario {
    fn default() -> Self {
        Self {
            seed: 1,
            clients: 12_000,
            servers: 4,
            arrival: Duration::from_secs(10),
            resolvers: 8,
            dns_ttl: Duration::from_secs(60),
        }
    }
}

/// The load of the servers at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    /// Clients per server (a dead server counts 0 and is left out of the figures).
    pub per_server: Vec<usize>,
    /// The most loaded live server over the mean.
    pub max_over_mean: f64,
    /// The least loaded live server over the mean.
    pub min_over_mean: f64,
    /// σ of a binomial count at this size: sqrt(n p (1 - p)), p = 1 / live servers.
    pub expected_sigma: f64,
    /// The largest |count - mean| among live servers, in σ.
    pub worst_sigma: f64,
    /// True when every live server is within ±4σ of the mean.
    pub within_4_sigma: bool,
}

/// One strategy's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StrategyReport {
    /// Its name.
    pub name: String,
    /// What it models.
    pub description: String,
    /// Once every client arrived.
    pub settled: Spread,
    /// Max/mean after each second of arrivals (second, ratio).
    pub max_over_mean_by_second: Vec<(u32, f64)>,
    /// The server that died (the most loaded one).
    pub killed: usize,
    /// After it died and its clients moved.
    pub after_kill: Spread,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BalanceReport {
    /// The seed.
    pub seed: u64,
    /// Clients.
    pub clients: usize,
    /// Servers.
    pub servers: usize,
    /// Each strategy.
    pub strategies: Vec<StrategyReport>,
}

fn spread(per_server: &[usize], dead: Option<usize>) -> Spread {
    let live: Vec<usize> = per_server
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != dead)
        .map(|(_, n)| *n)
        .collect();
    let total: usize = live.iter().sum();
    let k = live.len().max(1) as f64;
    let mean = total as f64 / k;
    let p = 1.0 / k;
    let sigma = (total as f64 * p * (1.0 - p)).sqrt();
    let max = live.iter().copied().max().unwrap_or(0) as f64;
    let min = live.iter().copied().min().unwrap_or(0) as f64;
    let worst = live
        .iter()
        .map(|n| (*n as f64 - mean).abs())
        .fold(0.0, f64::max);
    let worst_sigma = if sigma > 0.0 { worst / sigma } else { 0.0 };
    Spread {
        per_server: per_server.to_vec(),
        max_over_mean: if mean > 0.0 { max / mean } else { 0.0 },
        min_over_mean: if mean > 0.0 { min / mean } else { 0.0 },
        expected_sigma: sigma,
        worst_sigma,
        within_4_sigma: worst_sigma <= 4.0,
    }
}

/// How one client chooses, first and after its server died.
trait Chooser {
    fn first(&mut self, client: usize, arrival: Duration, loads: &[usize]) -> usize;
    fn after_loss(&mut self, client: usize, lost: usize, loads: &[usize]) -> usize;
}

/// flotilla: a balancer per client, seeded from its own entropy.
struct Seeded {
    balancers: Vec<Option<Balancer>>,
    servers: usize,
    seed_of: fn(u64, usize, Duration) -> u64,
    seed: u64,
}

impl Seeded {
    fn pick(balancer: &mut Balancer) -> usize {
        match balancer.poll(Duration::ZERO) {
            Decision::Connect(server) | Decision::Connected(server) => server,
            Decision::WaitUntil(_) => 0,
        }
    }
}

impl Chooser for Seeded {
    fn first(&mut self, client: usize, arrival: Duration, _: &[usize]) -> usize {
        let seed = (self.seed_of)(self.seed, client, arrival);
        let Ok(mut balancer) = Balancer::new(self.servers, BackoffConfig::default(), seed) else {
            return 0;
        };
        let server = Self::pick(&mut balancer);
        balancer.on_connected(server, Duration::ZERO);
        self.balancers[client] = Some(balancer);
        server
    }

    fn after_loss(&mut self, client: usize, lost: usize, _: &[usize]) -> usize {
        let Some(balancer) = self.balancers[client].as_mut() else {
            return 0;
        };
        balancer.on_failure(lost, Duration::from_secs(60));
        let server = Self::pick(balancer);
        balancer.on_connected(server, Duration::from_secs(60));
        server
    }
}

/// Clients behind caching resolvers that rotate their answer once per TTL.
struct Dns {
    servers: usize,
    resolver_of: Vec<usize>,
    offsets: Vec<usize>,
    ttl: Duration,
}

impl Chooser for Dns {
    fn first(&mut self, client: usize, arrival: Duration, _: &[usize]) -> usize {
        let resolver = self.resolver_of[client];
        let rotations = (arrival.as_secs_f64() / self.ttl.as_secs_f64()) as usize;
        (self.offsets[resolver] + rotations) % self.servers
    }

    fn after_loss(&mut self, _: usize, lost: usize, _: &[usize]) -> usize {
        // The cached answer still starts with the dead server: the next address.
        (lost + 1) % self.servers
    }
}

/// Two random servers, the less loaded one.
struct TwoChoices {
    rng: SmallRng,
    servers: usize,
}

impl TwoChoices {
    fn choose(&mut self, loads: &[usize], dead: Option<usize>) -> usize {
        let live: Vec<usize> = (0..self.servers).filter(|s| Some(*s) != dead).collect();
        let a = live[pick_uniform(&mut self.rng, live.len()).unwrap_or(0)];
        let b = live[pick_uniform(&mut self.rng, live.len()).unwrap_or(0)];
        if loads[b] < loads[a] { b } else { a }
    }
}

impl Chooser for TwoChoices {
    fn first(&mut self, _: usize, _: Duration, loads: &[usize]) -> usize {
        self.choose(loads, None)
    }

    fn after_loss(&mut self, _: usize, lost: usize, loads: &[usize]) -> usize {
        self.choose(loads, Some(lost))
    }
}

fn run_strategy(
    scenario: &BalanceScenario,
    name: &str,
    description: &str,
    chooser: &mut dyn Chooser,
) -> StrategyReport {
    let n = scenario.clients;
    let mut loads = vec![0usize; scenario.servers];
    let mut server_of = Vec::with_capacity(n);
    let mut by_second = Vec::new();
    let mut second = 1u32;
    for client in 0..n {
        let arrival = scenario.arrival.mul_f64(client as f64 / n.max(1) as f64);
        while arrival >= Duration::from_secs(u64::from(second)) {
            by_second.push((second, spread(&loads, None).max_over_mean));
            second += 1;
        }
        let server = chooser.first(client, arrival, &loads) % scenario.servers;
        loads[server] += 1;
        server_of.push(server);
    }
    by_second.push((second, spread(&loads, None).max_over_mean));
    let settled = spread(&loads, None);
    let killed = (0..scenario.servers)
        .max_by_key(|s| (loads[*s], usize::MAX - s))
        .unwrap_or(0);
    for (client, on) in server_of.iter_mut().enumerate() {
        if *on == killed {
            loads[killed] -= 1;
            let mut server = chooser.after_loss(client, killed, &loads) % scenario.servers;
            if server == killed {
                server = (killed + 1) % scenario.servers;
            }
            loads[server] += 1;
            *on = server;
        }
    }
    StrategyReport {
        name: name.to_owned(),
        description: description.to_owned(),
        settled,
        max_over_mean_by_second: by_second,
        killed,
        after_kill: spread(&loads, Some(killed)),
    }
}

/// Runs every strategy on the scenario. Fails for fewer than 2 servers or no client.
pub fn run_balance(scenario: &BalanceScenario) -> Result<BalanceReport, String> {
    if scenario.servers < 2 {
        return Err("the balance needs at least 2 servers (one dies)".into());
    }
    if scenario.clients == 0 || scenario.resolvers == 0 || scenario.dns_ttl.is_zero() {
        return Err("clients, resolvers and the DNS TTL must be above 0".into());
    }
    let n = scenario.clients;
    let mut strategies = Vec::new();
    let mut os = Seeded {
        balancers: vec![None; n],
        servers: scenario.servers,
        seed_of: |seed, client, _| derive_seed(seed, client as u64),
        seed: scenario.seed,
    };
    strategies.push(run_strategy(
        scenario,
        "os-seeded",
        "flotilla: each client's balancer seeded from its own entropy, uniform pick, random failover",
        &mut os,
    ));
    let mut timed = Seeded {
        balancers: vec![None; n],
        servers: scenario.servers,
        seed_of: |seed, _, arrival| seed.wrapping_add(arrival.as_secs()),
        seed: scenario.seed,
    };
    strategies.push(run_strategy(
        scenario,
        "time-seeded",
        "the same code seeded with the start second: every client of one second agrees",
        &mut timed,
    ));
    let mut rng = SmallRng::seed_from_u64(derive_seed(scenario.seed, 77));
    let resolver_of = (0..n)
        .map(|_| pick_uniform(&mut rng, scenario.resolvers).unwrap_or(0))
        .collect();
    let offsets = (0..scenario.resolvers)
        .map(|_| pick_uniform(&mut rng, scenario.servers).unwrap_or(0))
        .collect();
    let mut dns = Dns {
        servers: scenario.servers,
        resolver_of,
        offsets,
        ttl: scenario.dns_ttl,
    };
    strategies.push(run_strategy(
        scenario,
        "dns-round-robin",
        "clients behind caching resolvers, first address of a round-robin answer cached for its TTL",
        &mut dns,
    ));
    let mut two = TwoChoices {
        rng: SmallRng::seed_from_u64(derive_seed(scenario.seed, 78)),
        servers: scenario.servers,
    };
    strategies.push(run_strategy(
        scenario,
        "power-of-two",
        "two random servers, the less loaded (needs the servers' loads)",
        &mut two,
    ));
    Ok(BalanceReport {
        seed: scenario.seed,
        clients: scenario.clients,
        servers: scenario.servers,
        strategies,
    })
}

/// The report as an SVG chart: clients per server for each strategy (settled, and after
/// the kill), and max/mean over the arrival seconds.
pub fn render_svg(report: &BalanceReport) -> Result<String, String> {
    use plotters::prelude::*;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
    ];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 720)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(360);
        let (left, right) = top.split_horizontally(480);
        let k = report.servers;
        let strategies = report.strategies.len();
        let most = report
            .strategies
            .iter()
            .flat_map(|s| s.settled.per_server.iter().chain(&s.after_kill.per_server))
            .copied()
            .max()
            .unwrap_or(1) as f64;
        for (area, title, after) in [
            (&left, "clients per server", false),
            (&right, "after the busiest server died", true),
        ] {
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..k as f64, 0f64..most * 1.1)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("server")
                .y_desc("clients")
                .x_labels(k + 1)
                .x_label_formatter(&|x| format!("{}", x.floor() as usize))
                .y_label_formatter(&|y| format!("{y:.0}"))
                .draw()
                .map_err(|e| e.to_string())?;
            let width = 0.8 / strategies as f64;
            for (index, strategy) in report.strategies.iter().enumerate() {
                let counts = if after {
                    &strategy.after_kill.per_server
                } else {
                    &strategy.settled.per_server
                };
                let color = colors[index % colors.len()];
                let bars = counts.iter().enumerate().map(move |(server, count)| {
                    let x0 = server as f64 + 0.1 + index as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, *count as f64)], color.filled())
                });
                chart.draw_series(bars).map_err(|e| e.to_string())?;
            }
        }
        let seconds = report
            .strategies
            .iter()
            .flat_map(|s| s.max_over_mean_by_second.iter().map(|(t, _)| *t))
            .max()
            .unwrap_or(1);
        let top_ratio = report
            .strategies
            .iter()
            .flat_map(|s| s.max_over_mean_by_second.iter().map(|(_, r)| *r))
            .fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(&bottom)
            .caption("max / mean load while clients arrive", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(1u32..seconds, 0.9f64..top_ratio * 1.05)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("second (colours as in the bars above)")
            .y_desc("max / mean")
            .draw()
            .map_err(|e| e.to_string())?;
        for (index, strategy) in report.strategies.iter().enumerate() {
            let color = colors[index % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    strategy.max_over_mean_by_second.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(strategy.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    let mut out = String::with_capacity(svg.len() + 64);
    let _ = write!(out, "{svg}");
    Ok(out)
}
