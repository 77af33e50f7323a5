//! `atmos-kafka-bridge`: the relay's Kafka bridge, in an executable of its own. `atmos serve`
//! starts it (from the directory `atmos` is in) when `[kafka] brokers` is set, and restarts it
//! when it dies: librdkafka is C, and a broker can crash it (relay/src/kafka/supervisor.rs).
//! Keeping it out of `atmos` keeps librdkafka out of the relay's build and process.

mod broker;
mod child;
mod outbox;
mod results;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// The arguments the relay passes (`kafka::supervisor::child_args`).
#[derive(Parser)]
#[command(name = "atmos-kafka-bridge", version, about)]
struct Args {
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    events_topic: String,
    #[arg(long)]
    results_topic: String,
    #[arg(long)]
    group_id: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    atmos_relay::logging::init();
    let config = atmos_relay::config::KafkaConfig {
        brokers: args.brokers,
        events_topic: args.events_topic,
        results_topic: args.results_topic,
        group_id: args.group_id,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("atmos-kafka-bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                on_signal.cancel();
            }
        });
        child::run_child(config, &args.data_dir, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atmos-kafka-bridge: {e}");
            ExitCode::FAILURE
        }
    }
}
