// Execution options: how a loaded TorchScript module is transformed before it runs.
//   none  — run as saved.
//   exact — fp32: freeze (constants folded, conv-bn folded), then PyTorch's inference
//           optimizations (oneDNN / MKLDNN layouts and fused ops where they apply).
//   fast  — exact, and on a CPU with native bf16 (AVX512-BF16 or AMX) weights and activations
//           in bfloat16; on a CPU without it, fast is exact and the notes say so.
#pragma once

#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/csrc/jit/api/module.h>

namespace tsnative {

enum class OptimizeLevel { kNone, kExact, kFast };

// "none", "exact" or "fast". Throws OptionError for anything else.
OptimizeLevel parse_optimize_level(const std::string& name);

// OptimizeLevel -> "none", "exact" or "fast".
const char* optimize_level_name(OptimizeLevel level);

// Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16).
bool cpu_has_native_bf16();

// One way of running a model: the transformed module and the dtype its float inputs take.
struct Variant {
  torch::jit::Module module;
  c10::ScalarType input_dtype = c10::ScalarType::Float;  // float32 inputs are cast to this
  std::string name;                                      // e.g. "exact (frozen, oneDNN)"
};

// The variants worth trying for `level`, best guess first; the saved module ("none") is always
// last, so a caller that measures can fall back to it. `notes` explains fallbacks (a model that
// cannot be frozen, a CPU without bf16). `methods` are kept callable through freezing.
std::vector<Variant> candidate_variants(const torch::jit::Module& module, OptimizeLevel level,
                                        const c10::Device& device,
                                        const std::vector<std::string>& methods,
                                        std::vector<std::string>& notes);

}  // namespace tsnative
