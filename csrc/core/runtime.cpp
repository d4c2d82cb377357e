#include "core/runtime.h"

#include <dlfcn.h>

#include <filesystem>

#include <ATen/Parallel.h>
#include <ATen/cpu/Utils.h>
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

void load_library(const std::string& path) {
  const std::string what = "cannot load the operator library " + quoted(path);
  if (const auto problem = file_problem(path); !problem.empty()) {
    throw LoadError(what + ": " + problem);
  }
  // An absolute path, so that dlopen loads this file rather than searching its paths for the
  // name; RTLD_GLOBAL as torch.ops.load_library, for libraries that depend on each other.
  const std::string absolute = std::filesystem::absolute(path).string();
  void* handle = nullptr;
  try {
    handle = dlopen(absolute.c_str(), RTLD_NOW | RTLD_GLOBAL);
  } catch (const c10::Error& e) {  // thrown by a registration in its static initializers
    throw LoadError(what + ": " + first_line(e.what_without_backtrace()));
  }
  if (handle == nullptr) {
    const char* reason = dlerror();
    throw LoadError(what + ": " + (reason ? reason : "dlopen failed"));
  }
}

bool cpu_has(const std::string& capability) {
  const auto capabilities = at::cpu::get_cpu_capabilities();
  const auto found = capabilities.find(capability);
  return found != capabilities.end() && found->second.isBool() && found->second.toBool();
}

bool cpu_has_native_bf16() { return cpu_has("avx512_bf16") || cpu_has("amx_bf16"); }

bool cpu_has_vnni() { return cpu_has("avx512_vnni") || cpu_has("avx_vnni") || cpu_has("amx_int8"); }

std::string torch_version() { return TORCH_VERSION; }

}  // namespace tsnative
