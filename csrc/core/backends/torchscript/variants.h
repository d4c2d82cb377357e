// The TorchScript backend's variants: how a loaded module is transformed before it runs, for
// each optimize level (load_options.h).
//   none  — run as saved.
//   exact — fp32: freeze (constants folded, conv-bn folded), then either oneDNN Graph fusion
//           (CPU; the fused kernels are built for the shapes of the warm-up input) or PyTorch's
//           inference optimizations (MKLDNN layouts and fused ops where they apply).
//   fast  — exact, and on a CPU with native bf16 (AVX512-BF16 or AMX) weights and activations
//           in bfloat16; on a CPU without it, fast is exact and the notes say so.
//   bf16  — the bfloat16 variants of fast on any CPU, emulated (and slow) where the CPU has no
//           native bf16: to see a model's bfloat16 numerics before deploying it to one that has.
#pragma once

#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <torch/csrc/jit/api/module.h>

#include "core/load_options.h"

namespace tsnative {

// One way of running a model: the transformed module and the dtype its float inputs take.
struct Variant {
  torch::jit::Module module;
  c10::ScalarType input_dtype = c10::ScalarType::Float;  // float32 inputs are cast to this
  std::string name;  // e.g. "exact (float32, frozen, oneDNN Graph fusion)"
  // Fused only where its calls (the profiling executor optimizes it on the first ones of each
  // input shape) run inside an OnednnGraphFusionScope: Model runs every call of it in one.
  bool onednn_graph = false;
  // Run only if every variant before it failed, never timed against them.
  bool fallback_only = false;
  // The saved module itself (parameters and attributes as saved), not a frozen copy.
  bool as_saved = false;
};

// What the variants may use beyond the level: filled from the machine by Model::load, set by
// hand in tests so that every branch runs on every CPU.
struct VariantContext {
  c10::Device device = c10::kCPU;
  bool cpu_native_bf16 = false;  // cpu_has_native_bf16() on this machine
  // oneDNN Graph variants are offered only if the caller runs their first calls in an
  // OnednnGraphFusionScope.
  bool warmed_up_in_scope = false;
  // If set, only the variant of that name is built (the one a cached choice names), besides
  // the saved module.
  std::string only_variant;
};

// The variants worth trying for `level`, best guess first; the saved module ("none") is always
// last, so a caller that measures can fall back to it (for bf16 as a fallback only: timed
// against emulated bfloat16 it would win, and bf16 asks for bfloat16). `notes` explains fallbacks
// (a model that cannot be frozen or converted, a CPU without bf16). `methods` are kept callable
// through freezing.
std::vector<Variant> candidate_variants(const torch::jit::Module& module, OptimizeLevel level,
                                        const VariantContext& context,
                                        const std::vector<std::string>& methods,
                                        std::vector<std::string>& notes);

// While one is alive, the graphs the profiling executor optimizes in this thread (on a
// module's first calls of each input shape) get oneDNN Graph fusion. Unlike
// torch.jit.enable_onednn_fusion, which fuses every graph in the process, other threads and other
// models are left alone.
class OnednnGraphFusionScope {
 public:
  OnednnGraphFusionScope();
  ~OnednnGraphFusionScope();
  OnednnGraphFusionScope(const OnednnGraphFusionScope&) = delete;
  OnednnGraphFusionScope& operator=(const OnednnGraphFusionScope&) = delete;

 private:
  bool outer_;  // whether an enclosing scope was already fusing
};

}  // namespace tsnative
