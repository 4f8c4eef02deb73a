//! The GPUs as the NVIDIA driver reports them: through NVML (the driver's library, loaded at run
//! time), else `nvidia-smi`. One reading serves the GPU view (utilisation, memory, temperature,
//! power, processes) and the replica pool (each replica's VRAM against its `num_gpus` share of its
//! GPU's total). Readings are shared for a couple of seconds: the fallback forks a process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuMemory {
    /// Bytes of GPU memory used, by process id.
    pub by_pid: HashMap<u32, u64>,
    /// Total bytes, by GPU index.
    pub totals: HashMap<usize, u64>,
}

/// Parses `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits` (MiB).
/// A process on several GPUs appears once per GPU; its uses add up.
pub fn parse_apps(text: &str) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut cols = line.split(',').map(str::trim);
        if let (Some(Ok(pid)), Some(Ok(mib))) = (
            cols.next().map(str::parse::<u32>),
            cols.next().map(str::parse::<u64>),
        ) {
            *out.entry(pid).or_default() += mib << 20;
        }
    }
    out
}

fn query(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// GPU memory per process and each GPU's total, from the shared reading; `None` without an
/// NVIDIA driver.
pub fn memory() -> Option<GpuMemory> {
    let report = sample();
    if report.source == GpuSource::None {
        return None;
    }
    let mut by_pid: HashMap<u32, u64> = HashMap::new();
    for (pid, used) in report.devices.iter().flat_map(|d| &d.processes) {
        *by_pid.entry(*pid).or_default() += used;
    }
    Some(GpuMemory {
        by_pid,
        totals: report
            .devices
            .iter()
            .map(|d| (d.index, d.memory_total_bytes))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nvidia_smi_csv() {
        let apps = parse_apps("4242, 10240\n4243, 512\n4242, 1024\n[N/A], 3\n");
        assert_eq!(apps[&4242], 11264 << 20);
        assert_eq!(apps[&4243], 512 << 20);
        assert_eq!(apps.len(), 2);
        assert!(parse_devices("No devices were found\n").is_empty());
    }
}

/// One GPU as the console's GPU view shows it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GpuDevice {
    pub index: usize,
    pub name: String,
    pub utilization_percent: Option<u32>,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
    pub power_limit_w: Option<f64>,
    /// GPU memory by process id.
    pub processes: Vec<(u32, u64)>,
}

/// Every GPU, read through NVML (the driver's library, loaded at run time) or, failing that,
/// `nvidia-smi`; without either, why not.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GpuReport {
    /// Where the reading came from (`None` when neither answered).
    pub source: GpuSource,
    pub devices: Vec<GpuDevice>,
    pub unavailable: Option<GpuUnavailable>,
}

/// Where a GPU reading came from; serialised as the tool's name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub enum GpuSource {
    #[serde(rename = "NVML")]
    Nvml,
    #[serde(rename = "nvidia-smi")]
    NvidiaSmi,
    /// Neither answered.
    #[default]
    #[serde(rename = "")]
    None,
}

impl std::fmt::Display for GpuSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Nvml => "NVML",
            Self::NvidiaSmi => "nvidia-smi",
            Self::None => "",
        })
    }
}

/// Why there is no GPU reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuUnavailable {
    /// Neither NVML nor nvidia-smi answered: a CPU-only machine, or no driver installed.
    NoDriver { nvml_error: String },
}

impl std::fmt::Display for GpuUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoDriver { nvml_error } => write!(
                f,
                "no NVIDIA driver: NVML did not load ({nvml_error}) and nvidia-smi did not answer"
            ),
        }
    }
}

impl serde::Serialize for GpuUnavailable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

use nvml_wrapper::error::NvmlError;

/// The NVML handle, opened once (opening loads the driver library).
fn nvml() -> Result<&'static nvml_wrapper::Nvml, &'static NvmlError> {
    static NVML: std::sync::OnceLock<Result<nvml_wrapper::Nvml, NvmlError>> =
        std::sync::OnceLock::new();
    NVML.get_or_init(nvml_wrapper::Nvml::init).as_ref()
}

fn sample_nvml(nvml: &nvml_wrapper::Nvml) -> Result<Vec<GpuDevice>, NvmlError> {
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
    use nvml_wrapper::enums::device::UsedGpuMemory;
    let count = nvml.device_count()?;
    let mut devices = Vec::new();
    for index in 0..count {
        let d = nvml.device_by_index(index)?;
        let memory = d.memory_info().ok();
        devices.push(GpuDevice {
            index: index as usize,
            name: d.name().unwrap_or_default(),
            utilization_percent: d.utilization_rates().ok().map(|u| u.gpu),
            memory_used_bytes: memory.as_ref().map_or(0, |m| m.used),
            memory_total_bytes: memory.as_ref().map_or(0, |m| m.total),
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
            power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
            power_limit_w: d
                .enforced_power_limit()
                .ok()
                .map(|mw| f64::from(mw) / 1000.0),
            processes: d
                .running_compute_processes()
                .unwrap_or_default()
                .into_iter()
                .map(|p| {
                    let used = match p.used_gpu_memory {
                        UsedGpuMemory::Used(b) => b,
                        UsedGpuMemory::Unavailable => 0,
                    };
                    (p.pid, used)
                })
                .collect(),
        });
    }
    Ok(devices)
}

/// Parses `nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total,
/// temperature.gpu,power.draw,power.limit --format=csv,noheader,nounits` (MiB, W); fields the
/// card does not report (`[N/A]`) stay empty.
pub fn parse_devices(text: &str) -> Vec<GpuDevice> {
    text.lines()
        .filter_map(|line| {
            let c: Vec<&str> = line.split(',').map(str::trim).collect();
            if c.len() < 8 {
                return None;
            }
            let mib = |s: &str| s.parse::<u64>().ok().map(|m| m << 20);
            Some(GpuDevice {
                index: c[0].parse().ok()?,
                name: c[1].to_string(),
                utilization_percent: c[2].parse().ok(),
                memory_used_bytes: mib(c[3]).unwrap_or(0),
                memory_total_bytes: mib(c[4]).unwrap_or(0),
                temperature_c: c[5].parse().ok(),
                power_w: c[6].parse().ok(),
                power_limit_w: c[7].parse().ok(),
                processes: Vec::new(),
            })
        })
        .collect()
}

/// The latest reading, shared for [`REFRESH`] (blocking: it may fork `nvidia-smi`).
pub fn sample() -> GpuReport {
    static CACHE: Mutex<Option<(Instant, GpuReport)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, reading)) = cache.as_ref()
        && at.elapsed() < REFRESH
    {
        return reading.clone();
    }
    let reading = read();
    *cache = Some((Instant::now(), reading.clone()));
    reading
}

fn read() -> GpuReport {
    let nvml_error = match nvml().map(sample_nvml) {
        Ok(Ok(devices)) => {
            return GpuReport {
                source: GpuSource::Nvml,
                devices,
                unavailable: None,
            };
        }
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    let Some(text) = query(&[
        "--query-gpu=index,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw,power.limit",
        "--format=csv,noheader,nounits",
    ]) else {
        return GpuReport {
            unavailable: Some(GpuUnavailable::NoDriver { nvml_error }),
            ..Default::default()
        };
    };
    let mut devices = parse_devices(&text);
    // nvidia-smi lists processes without their GPU; they are shown under the first.
    if let (Some(first), Some(apps)) = (
        devices.first_mut(),
        query(&[
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ]),
    ) {
        first.processes = parse_apps(&apps).into_iter().collect();
        first.processes.sort_unstable();
    }
    GpuReport {
        source: GpuSource::NvidiaSmi,
        devices,
        unavailable: None,
    }
}

#[cfg(test)]
mod device_tests {
    use super::*;

    #[test]
    fn parses_the_device_query_with_missing_fields() {
        let d = parse_devices(
            "0, NVIDIA H100 80GB HBM3, 87, 40960, 81559, 61, 512.33, 700.00\n\
             1, NVIDIA T4, [N/A], 0, 15360, 40, [N/A], 70.00\nbroken line\n",
        );
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].utilization_percent, Some(87));
        assert_eq!(d[0].memory_used_bytes, 40960 << 20);
        assert_eq!(d[0].power_w, Some(512.33));
        assert_eq!(d[1].utilization_percent, None);
        assert_eq!(d[1].power_w, None);
        assert_eq!(d[1].name, "NVIDIA T4");
        assert_eq!(d[1].memory_total_bytes, 15360 << 20);
    }

    #[test]
    fn without_a_driver_the_reason_is_given() {
        let report = sample();
        match report.source {
            GpuSource::None => assert!(
                report
                    .unavailable
                    .unwrap()
                    .to_string()
                    .contains("no NVIDIA driver")
            ),
            _ => assert!(report.unavailable.is_none()),
        }
    }
}
