// Cross-thread round trips and one-way messages on tokio's runtimes, the peer of
// benchmarks/peers/cross_loop_coring.cpp: two single-threaded runtimes on two threads (coring's model: a loop per
// thread) exchanging messages through tokio::sync::mpsc, and the multi-thread runtime with 2 workers spawning a task
// per message. Prints microseconds per round trip (median of 5) and nanoseconds per one-way message.
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

fn round_trip_two_runtimes(n: usize) -> f64 {
    let (tx, mut rx) = mpsc::channel::<(i64, oneshot::Sender<i64>)>(1024);
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async move {
            while let Some((x, reply)) = rx.recv().await {
                let _ = reply.send(x);
            }
        });
    });
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let us = rt.block_on(async move {
        let mut sum = 0i64;
        for k in 0..1000 {
            let (rtx, rrx) = oneshot::channel();
            tx.send((k, rtx)).await.unwrap();
            sum += rrx.await.unwrap();
        }
        let t0 = Instant::now();
        for k in 0..n as i64 {
            let (rtx, rrx) = oneshot::channel();
            tx.send((k, rtx)).await.unwrap();
            sum += rrx.await.unwrap();
        }
        let us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
        if sum < 0 {
            println!();
        }
        us
    });
    server.join().unwrap();
    us
}

fn round_trip_multi_thread(n: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    rt.block_on(async move {
        let t0 = Instant::now();
        let mut sum = 0i64;
        for k in 0..n as i64 {
            sum += tokio::spawn(async move { k }).await.unwrap();
        }
        let us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
        if sum < 0 {
            println!();
        }
        us
    })
}

fn one_way_two_runtimes(n: usize) -> f64 {
    let (tx, mut rx) = mpsc::channel::<u64>(1024);
    let receiver = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async move {
            let mut got = 0u64;
            while rx.recv().await.is_some() {
                got += 1;
            }
            got
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let t0 = Instant::now();
    rt.block_on(async move {
        for k in 0..n as u64 {
            tx.send(k).await.unwrap();
        }
    });
    let got = receiver.join().unwrap();
    assert_eq!(got, n as u64);
    t0.elapsed().as_secs_f64() * 1e9 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(20000);
    let m: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(200000);
    let rt2 = median((0..5).map(|_| round_trip_two_runtimes(n)).collect());
    let ow2 = median((0..3).map(|_| one_way_two_runtimes(m)).collect());
    println!("tokio 2x current_thread + mpsc: round trip {:.2} us, one-way {:.0} ns/message", rt2, ow2);
    let rtm = median((0..5).map(|_| round_trip_multi_thread(n)).collect());
    println!("tokio multi_thread(2) spawn+await: round trip {:.2} us", rtm);
}
