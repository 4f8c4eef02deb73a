//! Device choice and the libtorch start-up probe.

use nicheimage_common::torch::{DeviceChoice, DtypeChoice};
use nicheimage_common::torch::{SmokeFailure, TorchReport};
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "device `cuda` requested but libtorch sees no CUDA device (driver missing, or a CPU-only libtorch)"
    )]
    CudaUnavailable,
}

/// `auto` takes the first CUDA device when libtorch has one, else the CPU.
pub fn select_device(choice: DeviceChoice) -> Result<Device, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => Err(DeviceError::CudaUnavailable),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
    }
}

/// The pipeline dtype NicheImage uses: fp16 on CUDA, fp32 on the CPU.
pub fn dtype_for(device: Device) -> Kind {
    if device.is_cuda() {
        Kind::Half
    } else {
        Kind::Float
    }
}

/// The operator's precision on `device`: `auto` is [`dtype_for`].
pub fn resolve_dtype(device: Device, choice: DtypeChoice) -> Kind {
    match choice {
        DtypeChoice::Auto => dtype_for(device),
        DtypeChoice::Fp16 => Kind::Half,
        DtypeChoice::Bf16 => Kind::BFloat16,
        DtypeChoice::Fp32 => Kind::Float,
    }
}

/// A small computation with a known answer on the chosen device.
fn smoke_test(device: Device) -> Result<(), SmokeFailure> {
    let run = || -> Result<f64, tch::TchError> {
        let _guard = tch::no_grad_guard();
        let a = Tensor::f_from_slice(&[1.0f32, 2.0, 3.0, 4.0])?
            .f_reshape([2, 2])?
            .f_to_device(device)?;
        let b = a.f_matmul(&a.f_transpose(0, 1)?)?; // [[5, 11], [11, 25]]
        b.f_sum(Kind::Double)?.f_double_value(&[])
    };
    match run() {
        Ok(v) if (v - 52.0).abs() < 1e-9 => Ok(()),
        Ok(v) => Err(SmokeFailure::WrongAnswer(v)),
        Err(e) => Err(SmokeFailure::Torch(e.to_string())),
    }
}

pub fn probe(choice: DeviceChoice) -> TorchReport {
    let smoke = select_device(choice)
        .map_err(|e| SmokeFailure::Device(e.to_string()))
        .and_then(smoke_test);
    TorchReport {
        compiled_in: true,
        cuda_available: tch::Cuda::is_available(),
        cuda_devices: tch::Cuda::device_count(),
        cudnn_available: tch::Cuda::cudnn_is_available(),
        cpu_threads: tch::get_num_threads(),
        smoke_test: smoke,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_computes_on_cpu() {
        let report = probe(DeviceChoice::Cpu);
        assert!(report.compiled_in);
        assert_eq!(report.smoke_test, Ok(()));
        assert!(report.cpu_threads >= 1);
    }

    #[test]
    fn cpu_rng_matches_pytorch_for_the_same_seed() {
        // torch.manual_seed(1234); torch.randn(1, 4, 64, 64): values from the exactness spec.
        tch::manual_seed(1234);
        let t = Tensor::randn([1, 4, 64, 64], (Kind::Float, Device::Cpu));
        let flat = t.flatten(0, -1);
        let first: Vec<f32> = (0..4).map(|i| flat.double_value(&[i]) as f32).collect();
        assert_eq!(
            first,
            vec![-0.111718565, -0.4965901, 0.1630737, -0.88168776]
        );
        let sum = t.sum(Kind::Double).double_value(&[]);
        assert!((sum - (-6.5699337272)).abs() < 1e-6, "{sum}");
    }

    #[test]
    fn cuda_request_without_cuda_is_a_clear_error() {
        if tch::Cuda::is_available() {
            return; // nothing to check on a GPU machine
        }
        let err = select_device(DeviceChoice::Cuda).unwrap_err().to_string();
        assert!(err.contains("no CUDA device"), "{err}");
    }
}
