#include "core/optimize.h"

#include <ATen/cpu/Utils.h>
#include <torch/csrc/jit/api/module.h>

#include "core/errors.h"

namespace tsnative {
namespace {

bool capability(const char* name) {
  const auto capabilities = at::cpu::get_cpu_capabilities();
  const auto found = capabilities.find(name);
  return found != capabilities.end() && found->second.isBool() && found->second.toBool();
}

// Freezes (inlining weights as constants, folding conv-bn) and applies PyTorch's inference
// passes. Methods other than forward survive freezing only when named as preserved.
torch::jit::Module frozen_for_inference(const torch::jit::Module& module,
                                        const std::vector<std::string>& methods) {
  std::vector<std::string> others;
  for (const auto& method : methods) {
    if (method != "forward") others.push_back(method);
  }
  auto frozen = torch::jit::freeze(module, others);
  return torch::jit::optimize_for_inference(frozen, others);
}

}  // namespace

OptimizeLevel parse_optimize_level(const std::string& name) {
  if (name == "none") return OptimizeLevel::kNone;
  if (name == "exact") return OptimizeLevel::kExact;
  if (name == "fast") return OptimizeLevel::kFast;
  throw OptionError("unknown optimize level '" + name + "': expected 'none', 'exact' or 'fast'");
}

const char* optimize_level_name(OptimizeLevel level) {
  switch (level) {
    case OptimizeLevel::kExact:
      return "exact";
    case OptimizeLevel::kFast:
      return "fast";
    default:
      return "none";
  }
}

bool cpu_has_native_bf16() { return capability("avx512_bf16") || capability("amx_bf16"); }

std::vector<Variant> candidate_variants(const torch::jit::Module& module, OptimizeLevel level,
                                        const c10::Device& device,
                                        const std::vector<std::string>& methods,
                                        std::vector<std::string>& notes) {
  std::vector<Variant> variants;
  if (level == OptimizeLevel::kFast) {
    if (device.is_cpu() && !cpu_has_native_bf16()) {
      notes.push_back(
          "fast: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so fast "
          "runs as exact, in float32");
    } else {
      try {
        auto half = module.clone();
        half.to(c10::ScalarType::BFloat16);
        variants.push_back({frozen_for_inference(half, methods), c10::ScalarType::BFloat16,
                            "fast (bf16, frozen)"});
      } catch (const std::exception& e) {
        notes.push_back(std::string("fast: bfloat16 conversion failed, using float32: ") +
                        e.what());
      }
    }
  }
  if (level != OptimizeLevel::kNone) {
    try {
      variants.push_back({frozen_for_inference(module, methods), c10::ScalarType::Float,
                          "exact (frozen, optimized for inference)"});
    } catch (const std::exception& e) {
      const std::string message = e.what();
      notes.push_back("exact: the model cannot be frozen, running it as saved: " +
                      message.substr(0, message.find('\n')));
    }
  }
  variants.push_back({module, c10::ScalarType::Float, "none (as saved)"});
  return variants;
}

}  // namespace tsnative
