//! Job round trip latency and bus throughput, in-process and over Redis on loopback.
//!
//! `cargo bench -p agents-workers --bench workers` (Redis variants need `AGENTS_TEST_REDIS_URL`, else they are
//! skipped). Besides criterion's timings, each round-trip group prints p50/p99/p99.9 over 20,000 sequential jobs.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agents_workers::*;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

struct Echo;

#[async_trait::async_trait]
impl Worker for Echo {
    fn job_handlers(&self) -> JobHandlers<Self> {
        JobHandlers::new().job("echo", |_w: Arc<Echo>, job: Job| async move {
            Ok(job.payload().cloned().unwrap_or_default())
        })
    }
}

struct Client;
impl Worker for Client {}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn setup(
    bus_a: Arc<dyn Bus>,
    bus_b: Arc<dyn Bus>,
) -> (WorkerRunner, WorkerRunner, WorkerContext) {
    let a = WorkerRunner::new("bench-a", bus_a)
        .unwrap()
        .with_sigint_handling(false);
    let b = WorkerRunner::new("bench-b", bus_b)
        .unwrap()
        .with_sigint_handling(false);
    b.add_worker(WorkerSpec::new("echo", Echo)).await.unwrap();
    let client = a
        .add_worker(WorkerSpec::new("client", Client))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    a.registry()
        .wait_for(&["echo".to_owned()], Some(deadline))
        .await
        .unwrap();
    (a, b, client.context().clone())
}

async fn round_trip(ctx: &WorkerContext) {
    let params = JobParams::new()
        .with_name("echo")
        .with_payload(json!({"n": 1}))
        .with_timeout(Duration::from_secs(5));
    let job = ctx.job("echo", params).await.unwrap();
    job.response().await.unwrap();
}

fn percentiles(label: &str, rt: &tokio::runtime::Runtime, ctx: &WorkerContext, n: usize) {
    let mut samples = rt.block_on(async {
        for _ in 0..1000 {
            round_trip(ctx).await;
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            round_trip(ctx).await;
            v.push(t.elapsed());
        }
        v
    });
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    eprintln!(
        "{label}: n={n} p50={:?} p99={:?} p99.9={:?} max={:?}",
        at(0.50),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    );
}

fn job_round_trip(c: &mut Criterion) {
    let rt = rt();
    let bus = LocalBus::new();
    let (_a, _b, ctx) = rt.block_on(setup(Arc::new(bus.clone()), Arc::new(bus)));
    percentiles("job round trip, in-process", &rt, &ctx, 20_000);
    c.bench_function("job_round_trip/in_process", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    round_trip(&ctx).await;
                }
                t.elapsed()
            })
        })
    });
}

/// Sends `iters` data messages to one subscriber that drains them concurrently (one thread).
async fn pump(bus: Arc<dyn Bus>, iters: u64, tag: &str) -> Duration {
    let mut sub = bus.subscribe(&format!("sink-{tag}")).unwrap();
    let consumer = tokio::spawn(async move {
        for _ in 0..iters {
            sub.recv().await.unwrap();
        }
    });
    let t = Instant::now();
    for i in 0..iters {
        let body = MessageBody::Custom {
            name: "tick".into(),
            data: json!(i),
        };
        bus.send(BusMessage::new("src", Some(format!("sink-{tag}")), body))
            .await
            .unwrap();
    }
    consumer.await.unwrap();
    t.elapsed()
}

fn bus_throughput(c: &mut Criterion) {
    let rt = rt();
    let mut group = c.benchmark_group("bus_throughput");
    group.throughput(Throughput::Elements(10_000));
    let mut round = 0u64;
    group.bench_function("in_process_10k_messages", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    total += pump(Arc::new(LocalBus::new()), 10_000, &round.to_string()).await;
                }
                total
            })
        })
    });
    group.finish();
}

fn redis(c: &mut Criterion) {
    let Ok(url) = std::env::var("AGENTS_TEST_REDIS_URL") else {
        eprintln!("SKIP redis benches: AGENTS_TEST_REDIS_URL is not set");
        return;
    };
    let rt = rt();
    let channel = format!("agents-bench:{}", uuid::Uuid::new_v4());
    let (_a, _b, ctx) = rt.block_on(async {
        let a = RedisBus::connect_with(&url, &channel, BusConfig::default())
            .await
            .unwrap();
        let b = RedisBus::connect_with(&url, &channel, BusConfig::default())
            .await
            .unwrap();
        setup(Arc::new(a), Arc::new(b)).await
    });
    percentiles("job round trip, Redis loopback", &rt, &ctx, 5_000);
    c.bench_function("job_round_trip/redis", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    round_trip(&ctx).await;
                }
                t.elapsed()
            })
        })
    });
    let bus: Arc<dyn Bus> = Arc::new(
        rt.block_on(RedisBus::connect_with(&url, &channel, BusConfig::default()))
            .unwrap(),
    );
    let mut group = c.benchmark_group("bus_throughput");
    group.throughput(Throughput::Elements(2_000));
    group.sample_size(10);
    let mut round = 0u64;
    group.bench_function("redis_2k_messages", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    total += pump(bus.clone(), 2_000, &format!("r{round}")).await;
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, job_round_trip, bus_throughput, redis);
criterion_main!(benches);
