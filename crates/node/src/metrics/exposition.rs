//! Prometheus text exposition (format 0.0.4) of the node state.

use crate::proxy::counters::LATENCY_BOUNDS_MS;
use crate::runtime::event::{
    ProxyReport, ReplicaReport, ReplicaStatus, ValidatorReport, WeightsStatus,
};
use crate::runtime::{ComponentStatus, NodeState};
use std::fmt::Write;

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Exposition(String);

/// One metric family: its HELP and TYPE written once, then samples under its name.
struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl Exposition {
    fn family<'a>(&'a mut self, name: &'a str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Family {
            out: &mut self.0,
            name,
        }
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help).sample(&[], value);
    }

    /// One family with a sample per replica, labelled by its index (and a remote replica by
    /// its address too, e.g. each address a followed DNS name gave).
    fn per_replica(
        &mut self,
        state: &NodeState,
        (name, kind, help): (&str, &str, &str),
        value: impl Fn(&ReplicaReport) -> f64,
    ) {
        let mut family = self.family(name, kind, help);
        for (i, r) in &state.replicas {
            let index = i.to_string();
            match &r.remote {
                Some(remote) => family.sample(&[("replica", &index), ("remote", remote)], value(r)),
                None => family.sample(&[("replica", &index)], value(r)),
            }
        }
    }
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.suffixed("", labels, value);
    }

    /// A sample of a histogram's series (`_bucket`, `_sum`, `_count`).
    fn suffixed(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            let joined: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", joined.join(","));
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The validator's last round by outcome kind, and where its weights stand.
fn validator(out: &mut Exposition, v: &ValidatorReport) {
    let mut kinds = std::collections::BTreeMap::<&str, u32>::new();
    for o in &v.last_round {
        *kinds.entry(o.reason.kind()).or_default() += 1;
    }
    let mut family = out.family(
        "nicheimage_validator_last_round_miners",
        "gauge",
        "Miners in the validator's last round, by what became of their answer.",
    );
    for (kind, n) in kinds {
        family.sample(&[("outcome", kind)], f64::from(n));
    }
    if let Some(block) = v.weights.as_ref().and_then(WeightsStatus::set_at) {
        out.single(
            "nicheimage_validator_weights_set_block",
            "gauge",
            "The block at which the chain last took the validator's weights.",
            block as f64,
        );
    }
}

/// The validator proxy: on/off, in flight, all-time counters and the latency histogram.
fn proxy(out: &mut Exposition, p: &ProxyReport) {
    out.single(
        "nicheimage_proxy_enabled",
        "gauge",
        "Whether the validator proxy listens (1) or not (0).",
        f64::from(u8::from(p.listening.is_some())),
    );
    out.single(
        "nicheimage_proxy_in_flight",
        "gauge",
        "Proxy requests being served.",
        p.in_flight as f64,
    );
    let t = &p.total;
    let mut requests = out.family(
        "nicheimage_proxy_requests_total",
        "counter",
        "Proxy requests by result (failures by reason), all days kept.",
    );
    requests.sample(&[("result", "success"), ("reason", "")], t.success as f64);
    for (reason, n) in &t.fail_reasons {
        requests.sample(&[("result", "fail"), ("reason", reason)], *n as f64);
    }
    let mut checks = out.family(
        "nicheimage_proxy_checks_total",
        "counter",
        "Organic checks run, by outcome.",
    );
    checks.sample(
        &[("outcome", "passed")],
        t.checked.saturating_sub(t.check_failed) as f64,
    );
    checks.sample(&[("outcome", "failed")], t.check_failed as f64);
    out.single(
        "nicheimage_proxy_image_bytes_total",
        "counter",
        "Base64 image bytes sent to the owner.",
        t.bytes as f64,
    );
    let mut latency = out.family(
        "nicheimage_proxy_latency_milliseconds",
        "histogram",
        "Proxy request latency.",
    );
    let mut cumulative = 0;
    for (i, bound) in LATENCY_BOUNDS_MS.iter().enumerate() {
        cumulative += t.latency_ms.get(i).copied().unwrap_or(0);
        latency.suffixed("_bucket", &[("le", &bound.to_string())], cumulative as f64);
    }
    let count: u64 = t.latency_ms.iter().sum();
    latency.suffixed("_bucket", &[("le", "+Inf")], count as f64);
    latency.suffixed("_sum", &[], t.latency_ms_sum as f64);
    latency.suffixed("_count", &[], count as f64);
}

/// Components, the process and host, replicas.
fn node(out: &mut Exposition, state: &NodeState, now_unix_ms: u64) {
    let mut build = out.family(
        "nicheimage_build_info",
        "gauge",
        "Build version of nicheimage-tui.",
    );
    build.sample(&[("version", state.version)], 1.0);
    out.single(
        "nicheimage_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        state.uptime_secs(now_unix_ms) as f64,
    );
    let mut up = out.family(
        "nicheimage_component_up",
        "gauge",
        "1 while the component runs, 0 while starting, in backoff or stopped.",
    );
    for (name, c) in &state.components {
        let running = c.status == ComponentStatus::Running;
        up.sample(&[("component", name)], f64::from(u8::from(running)));
    }
    let mut restarts = out.family(
        "nicheimage_component_restarts_total",
        "counter",
        "Restarts of the component after a failure or by command.",
    );
    for (name, c) in &state.components {
        restarts.sample(&[("component", name)], c.restarts as f64);
    }
    if let Some(h) = &state.host {
        out.single(
            "nicheimage_process_cpu_seconds_total",
            "counter",
            "CPU time used by the node process.",
            h.process_cpu_seconds,
        );
        out.single(
            "nicheimage_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the node process.",
            h.process_rss_bytes as f64,
        );
        out.single(
            "nicheimage_host_load1",
            "gauge",
            "Host load average over 1 minute.",
            h.load_average_1m,
        );
        out.single(
            "nicheimage_host_memory_available_bytes",
            "gauge",
            "Host memory available.",
            h.memory_available_bytes as f64,
        );
    }
}

fn replicas(out: &mut Exposition, state: &NodeState) {
    out.per_replica(
        state,
        (
            "nicheimage_replica_up",
            "gauge",
            "1 while the replica is ready or busy.",
        ),
        |r| {
            let up = matches!(r.status, ReplicaStatus::Ready | ReplicaStatus::Busy);
            f64::from(u8::from(up))
        },
    );
    out.per_replica(
        state,
        (
            "nicheimage_replica_images_total",
            "counter",
            "Images the replica generated.",
        ),
        |r| r.served as f64,
    );
    out.per_replica(
        state,
        (
            "nicheimage_replica_nsfw_blanked_total",
            "counter",
            "Served images the NSFW filter blacked out.",
        ),
        |r| r.nsfw_blanked as f64,
    );
    let mut failures = out.family(
        "nicheimage_replica_failures_total",
        "counter",
        "Failed jobs by reason.",
    );
    for (i, r) in &state.replicas {
        for (reason, n) in &r.failures {
            failures.sample(
                &[("replica", &i.to_string()), ("reason", reason)],
                *n as f64,
            );
        }
    }
    out.per_replica(
        state,
        (
            "nicheimage_replica_restarts_total",
            "counter",
            "Times the replica process was started again.",
        ),
        |r| f64::from(r.restarts),
    );
    out.per_replica(
        state,
        (
            "nicheimage_replica_images_per_second",
            "gauge",
            "Images per second over the last minute, at the replica's last report.",
        ),
        |r| r.images_per_sec,
    );
    if state.replicas.values().any(|r| r.vram_bytes.is_some()) {
        out.per_replica(
            state,
            (
                "nicheimage_replica_vram_bytes",
                "gauge",
                "GPU memory the replica process uses.",
            ),
            |r| r.vram_bytes.unwrap_or(0) as f64,
        );
    }
    let mut latency = out.family(
        "nicheimage_replica_latency_milliseconds",
        "gauge",
        "Generation latency percentiles over the last 256 images.",
    );
    for (i, r) in &state.replicas {
        let l = &r.latency_ms;
        for (q, v) in [("0.5", l.p50), ("0.95", l.p95), ("0.99", l.p99)] {
            if let Some(v) = v {
                latency.sample(&[("replica", &i.to_string()), ("quantile", q)], v as f64);
            }
        }
    }
}

pub fn render(state: &NodeState, now_unix_ms: u64) -> String {
    let mut out = Exposition(String::new());
    node(&mut out, state, now_unix_ms);
    if !state.replicas.is_empty() {
        replicas(&mut out, state);
    }
    if let Some(p) = &state.proxy {
        proxy(&mut out, p);
    }
    if let Some(v) = &state.validator {
        validator(&mut out, v);
    }
    if !state.endpoint_responses.is_empty() {
        let mut responses = out.family(
            "nicheimage_endpoint_responses_total",
            "counter",
            "Endpoint responses by HTTP status.",
        );
        for (status, n) in &state.endpoint_responses {
            responses.sample(&[("status", &status.to_string())], *n as f64);
        }
        out.single(
            "nicheimage_endpoint_queue_depth",
            "gauge",
            "Requests waiting for a free replica.",
            state.endpoint_queue_depth as f64,
        );
    }
    if let Some(t) = &state.torch {
        out.single(
            "nicheimage_cuda_devices",
            "gauge",
            "CUDA devices libtorch can use.",
            t.cuda_devices as f64,
        );
    }
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ComponentChange, Event};

    #[test]
    fn components_and_escaping() {
        let mut s = NodeState::new(0);
        for change in [ComponentChange::Starting, ComponentChange::Running] {
            s.apply(
                Event::Component {
                    name: "we\"ird".into(),
                    change,
                },
                1,
            );
        }
        let text = render(&s, 5_000);
        assert!(text.contains("nicheimage_uptime_seconds 5\n"), "{text}");
        assert!(
            text.contains("nicheimage_component_up{component=\"we\\\"ird\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE nicheimage_component_restarts_total counter\n"));
    }

    #[test]
    fn remote_replicas_carry_their_address() {
        use crate::runtime::event::{ReplicaReport, ReplicaStatus};
        let mut s = NodeState::new(0);
        let mut remote = ReplicaReport::new(1000, vec![], Some("http://10.0.0.7:10006".into()));
        remote.status = ReplicaStatus::Ready;
        s.apply(Event::Replica(remote), 1);
        s.apply(Event::Replica(ReplicaReport::new(0, vec![], None)), 1);
        let text = render(&s, 5_000);
        assert!(
            text.contains(
                "nicheimage_replica_up{replica=\"1000\",remote=\"http://10.0.0.7:10006\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("nicheimage_replica_up{replica=\"0\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn the_validator_round_is_labelled_by_outcome_and_weights_by_block() {
        use crate::reward::judge::Verdict;
        use crate::runtime::event::{
            RewardReason, RoundOutcome, ServiceVerdict, Unanswered, ValidatorReport, WeightsStatus,
        };
        let outcome = |uid, reason| RoundOutcome {
            uid,
            model: "Tiny".into(),
            pipeline: crate::catalogue::Pipeline::Txt2img,
            reward: Some(0.0),
            reason,
            latency_ms: None,
        };
        let judged = |verdict| RewardReason::Judged {
            verdict: ServiceVerdict::Verdict(verdict),
            secs: 1.0,
            reward: 0.0,
        };
        let mut s = NodeState::new(0);
        s.apply(
            Event::Validator(ValidatorReport {
                last_round: vec![
                    outcome(1, judged(Verdict::Match { distance: 2 })),
                    outcome(2, judged(Verdict::Match { distance: 0 })),
                    outcome(3, judged(Verdict::Mismatch { distance: 30 })),
                    outcome(
                        4,
                        RewardReason::Unanswered(Unanswered::Timeout { secs: 12.0 }),
                    ),
                ],
                weights: Some(WeightsStatus::Revealed {
                    block: 4321,
                    uids: 2,
                    commit_block: 4300,
                }),
                ..Default::default()
            }),
            1,
        );
        let text = render(&s, 5_000);
        for line in [
            "nicheimage_validator_last_round_miners{outcome=\"match\"} 2\n",
            "nicheimage_validator_last_round_miners{outcome=\"mismatch\"} 1\n",
            "nicheimage_validator_last_round_miners{outcome=\"timeout\"} 1\n",
            "nicheimage_validator_weights_set_block 4321\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
