// Process-wide settings and device handling. Everything here affects the whole process
// (including a `torch` imported beside tsnative in Python), not one model.
#pragma once

#include <string>

#include <c10/core/Device.h>

namespace tsnative {

// Parses "cpu", "cuda" or "cuda:N" and checks the device exists on this machine.
// Throws OptionError for a malformed or unsupported string, LoadError if it is unavailable.
c10::Device resolve_device(const std::string& spec);

// Sets the intra-op thread pool size (process-wide). Throws OptionError if n < 1.
void set_num_threads(int n);

// Sets the inter-op thread pool size (process-wide). LibTorch allows this once, before any
// inter-op work has started; a later call throws OptionError saying so.
void set_num_interop_threads(int n);

// The current intra-op thread pool size.
int num_threads();

// Whether this build of LibTorch can use CUDA on this machine.
bool cuda_available();

// Loads a shared library that registers TorchScript operators (TORCH_LIBRARY), as Python's
// torch.ops.load_library does: load it before a model that calls them. Its operators stay
// registered for the life of the process. Throws LoadError with the loader's reason (missing,
// not a shared object, an undefined symbol, an operator registered twice).
void load_library(const std::string& path);

// Whether this CPU has the named capability, as LibTorch's cpuinfo names them ("avx2",
// "avx512_bf16", "amx_tile", ...; at::cpu::get_cpu_capabilities lists them).
bool cpu_has(const std::string& capability);

// Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16).
bool cpu_has_native_bf16();

// Whether this CPU has an int8 dot product instruction (AVX512-VNNI, AVX-VNNI or AMX-INT8).
// Without one, oneDNN's int8 kernels sum pairs of u8 x s8 products in 16 bits, which saturate
// unless activations keep to 7 bits.
bool cpu_has_vnni();

// The LibTorch version tsnative was compiled against, e.g. "2.13.0".
std::string torch_version();

}  // namespace tsnative
