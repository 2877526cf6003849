//! Device selection at run time: `cpu`, `cuda` or `cuda:N`. Without an argument: the first CUDA
//! device when the binary was built with the `cuda` feature and a GPU answers, else the CPU with a
//! warning. (candle 0.11.1's `cuda_if_available` returns an error, not the CPU, when the driver is
//! missing, so this matches on it.)

use candle_core::Device;

use crate::error::{Error, Result};

/// Parses a `--device` value (None: automatic).
pub fn select(arg: Option<&str>) -> Result<Device> {
    match arg.map(str::trim) {
        None | Some("auto") => Ok(auto()),
        Some("cpu") => Ok(Device::Cpu),
        Some(s) if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map_err(|_| Error::invalid("--device", "expected cpu, cuda or cuda:N", s))?,
                None => 0,
            };
            cuda(ordinal).map_err(|m| Error::invalid("--device", m, s))
        }
        Some(other) => Err(Error::invalid("--device", "expected cpu, cuda or cuda:N", other)),
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> std::result::Result<Device, String> {
    Device::new_cuda(ordinal).map_err(|e| {
        format!(
            "no usable CUDA device {ordinal} ({})",
            e.to_string().lines().next().unwrap_or("")
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize) -> std::result::Result<Device, String> {
    Err("this binary was built without the `cuda` feature (see validation/gpu/setup-build.sh)".into())
}

fn auto() -> Device {
    #[cfg(feature = "cuda")]
    {
        match Device::new_cuda(0) {
            Ok(d) => return d,
            Err(e) => eprintln!(
                "warning: no usable CUDA device ({}); running on the CPU",
                e.to_string().lines().next().unwrap_or("")
            ),
        }
    }
    Device::Cpu
}

/// A short description for records ("cpu", "cuda:0").
pub fn describe(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_values() {
        assert!(matches!(select(Some("cpu")).unwrap(), Device::Cpu));
        assert!(select(Some("gpu")).unwrap_err().to_string().contains("--device"));
        assert!(select(Some("cuda:x")).is_err());
        #[cfg(not(feature = "cuda"))]
        assert!(select(Some("cuda")).unwrap_err().to_string().contains("cuda` feature"));
    }
}
