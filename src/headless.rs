//! `--no-ui`: the same node, with a one-line JSON status snapshot on stdout at an interval.

use nicheimage_node::runtime::state::unix_ms_now;
use nicheimage_node::runtime::{Node, NodeState};
use serde_json::json;
use std::io::Write;
use std::time::Duration;

/// One status line: a JSON object with `"type":"status"`, no newline.
pub fn status_line(state: &NodeState, now_unix_ms: u64) -> String {
    json!({
        "type": "status",
        "unix_ms": now_unix_ms,
        "version": state.version,
        "uptime_secs": state.uptime_secs(now_unix_ms),
        "healthy": state.healthy(),
        "components": state.components,
        "listeners": state.listeners,
        "host": state.host,
        "gpu": state.gpu,
        "torch": state.torch,
        "replicas": state.replicas,
        "chain": state.chain,
        "miners": state.miners,
        "reward": state.reward,
        "validator": state.validator,
        "proxy": state.proxy,
    })
    .to_string()
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // stdout closed (a pipe reader went away) is not a reason to stop the node.
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
}

/// Prints status lines until shutdown, then a final one.
pub async fn run(node: &Node, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; give components a moment to report first.
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = node.shutdown.cancelled() => break,
            _ = ticker.tick() => print_line(&status_line(&node.snapshot(), unix_ms_now())),
        }
    }
}

/// The last line, after every component has drained.
pub fn print_final(state: &NodeState) {
    print_line(&status_line(state, unix_ms_now()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use nicheimage_node::runtime::{ComponentChange, Event};

    #[test]
    fn status_line_is_one_json_object() {
        let mut s = NodeState::new(1_000);
        s.apply(
            Event::Component {
                name: "metrics".into(),
                change: ComponentChange::Starting,
            },
            1_000,
        );
        s.apply(
            Event::Component {
                name: "metrics".into(),
                change: ComponentChange::Running,
            },
            1_000,
        );
        let line = status_line(&s, 61_000);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "status");
        assert_eq!(v["uptime_secs"], 60);
        assert_eq!(v["healthy"], true);
        assert_eq!(v["components"]["metrics"]["status"], "running");
        assert_eq!(v["components"]["metrics"]["restarts"], 0);
    }
}
