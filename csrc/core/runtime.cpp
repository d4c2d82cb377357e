#include "core/runtime.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "core/errors.h"

namespace tsnative {

c10::Device resolve_device(const std::string& spec) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(spec);
  } catch (const c10::Error&) {
    throw OptionError("invalid device '" + spec + "': expected 'cpu', 'cuda' or 'cuda:N'");
  }
  if (device.is_cpu()) {
    return device;
  }
  if (!device.is_cuda()) {
    throw OptionError("unsupported device '" + spec + "': tsnative runs on 'cpu' or 'cuda'");
  }
  if (!cuda_available()) {
    throw LoadError("device '" + spec +
                    "' is not available: this LibTorch build or machine has no CUDA device");
  }
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count) {
    throw LoadError("device '" + spec + "' is not available: this machine has " +
                    std::to_string(count) + " CUDA device(s)");
  }
  return device;
}

void set_num_threads(int n) {
  if (n < 1) {
    throw OptionError("thread count must be at least 1, got " + std::to_string(n));
  }
  at::set_num_threads(n);
}

void set_num_interop_threads(int n) {
  if (n < 1) {
    throw OptionError("inter-op thread count must be at least 1, got " + std::to_string(n));
  }
  try {
    at::set_num_interop_threads(n);
  } catch (const c10::Error&) {
    throw OptionError(
        "the inter-op thread count can only be set once per process, before any inter-op "
        "parallel work has started");
  }
}

int num_threads() { return at::get_num_threads(); }

bool cuda_available() { return torch::cuda::is_available(); }

std::string torch_version() { return TORCH_VERSION; }

}  // namespace tsnative
