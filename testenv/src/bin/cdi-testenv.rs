//! `cdi-testenv`: builds the test control plane ahead of the tests, or runs one by hand.
//!
//! ```text
//! cdi-testenv build                          # build kube-apiserver/-controller-manager once
//! cdi-testenv up [IMAGE=BINARY ...]          # start a cluster, print its kubeconfig, wait for Ctrl-C
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: cdi-testenv build | up [IMAGE=BINARY ...]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        return usage();
    };
    match command.as_str() {
        "build" => match cdi_testenv::binaries::ensure() {
            Ok(bins) => {
                println!("kube-apiserver: {}", bins.apiserver.display());
                println!(
                    "kube-controller-manager: {}",
                    bins.controller_manager.display()
                );
                println!("etcd: {}", bins.etcd.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cdi-testenv: {e}");
                ExitCode::FAILURE
            }
        },
        "up" => {
            let mut binaries = BTreeMap::new();
            for pair in &args[1..] {
                let Some((image, binary)) = pair.split_once('=') else {
                    return usage();
                };
                binaries.insert(image.to_string(), PathBuf::from(binary));
            }
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cdi-testenv: start a runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(async {
                let cluster = match cdi_testenv::TestCluster::start(binaries).await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("cdi-testenv: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                println!("export KUBECONFIG={}", cluster.kubeconfig().display());
                println!("# running; Ctrl-C stops and removes everything");
                let _ = tokio::signal::ctrl_c().await;
                ExitCode::SUCCESS
            })
        }
        _ => usage(),
    }
}
