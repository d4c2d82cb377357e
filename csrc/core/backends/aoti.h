// The AOTInductor backend: a package (.pt2) that torch._inductor.aoti_compile_and_package
// wrote, run by LibTorch's AOTIModelPackageLoader. It has forward alone, which takes tensors;
// it has no optimize levels (Inductor optimized it when it compiled it) and no parameters to
// read (they are compiled into its code).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>
#include <c10/core/Device.h>

#include "core/backend.h"
#include "core/pytree_spec.h"
#include "core/runtime.h"

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace tsnative {

// Key of the metadata entry (aot_inductor.metadata) that describes forward's tensor arguments
// as tsnative.export saw them: [{"name", "dtype", "shape": [3, {"name", "min", "max"}, ...]}];
// a dimension is its size, or the range of a dynamic one ("max": null for no upper bound).
inline constexpr const char* kInputsMetadataKey = "tsnative.inputs";

// Key of the metadata entry that names (space-separated, as cpuinfo does: "avx512_bf16") the
// CPU capabilities Inductor's compile flags assumed beyond the ISA it records in AOTI_CPU_ISA:
// it compiles with -mavx512bf16 where the exporting CPU has AVX512-BF16, and says nothing.
inline constexpr const char* kCpuFlagsMetadataKey = "tsnative.cpu_flags";

// Why this machine cannot run code compiled for `metadata`'s device (AOTI_DEVICE_KEY), machine
// (AOTI_MACHINE) and CPU capabilities (AOTI_CPU_ISA's words, kCpuFlagsMetadataKey's flags); ""
// if it can. `cpu_has` says what this CPU has (a test gives another CPU's answers).
std::string platform_problem(
    const std::unordered_map<std::string, std::string>& metadata, const c10::Device& device,
    const std::function<bool(const std::string&)>& cpu_has = tsnative::cpu_has);

// One tensor argument of forward, as exported.
struct TensorSpec {
  struct Dimension {
    int64_t size = -1;  // a static size; -1 for a dynamic one
    std::string name;   // a dynamic one's name ("batch")
    int64_t min = 0;
    int64_t max = -1;  // -1: unbounded
  };
  std::string name;
  c10::ScalarType dtype = c10::ScalarType::Float;
  std::vector<Dimension> shape;
};

class AotiBackend final : public Backend {
 public:
  // Loads the package at `path` for `device` and warms it up (its first call allocates its
  // buffers). `source` names it in messages. Its forward's signature has its tensor arguments,
  // named as exported (else input_0, input_1, ...), and its output's type. Throws LoadError
  // (corrupt, compiled for another device, for an instruction set this CPU lacks, or for
  // arguments or outputs tsnative cannot represent), UnsupportedFormatError (no path: a package
  // in memory), OptionError (an optimize level), InferenceError (the caller's warm-up inputs
  // fail).
  static std::unique_ptr<AotiBackend> load(const std::string& path, const std::string& source,
                                           const c10::Device& device, const LoadOptions& options);
  ~AotiBackend() override;

  // Runs forward: checks dtype and shape against what was exported, moves the tensors to the
  // device, contiguous, and nests the outputs as the eager model returned them. Throws
  // ArgumentError for an input outside the exported shapes, InferenceError for a failure
  // inside the compiled code.
  c10::IValue run(const std::string& method, const c10::FunctionSchema& signature,
                  std::vector<c10::IValue> args) const override;
  // "none: an AOTInductor package, compiled ahead of time for <device> (<ISA>)", and whether
  // the package's own code checks its inputs.
  std::string optimization() const override { return description_; }

 private:
  AotiBackend(std::string source, c10::Device device);
  void check(const std::vector<at::Tensor>& inputs) const;

  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  std::vector<TensorSpec> inputs_;  // empty if the package does not describe them
  TreeSpec outputs_;
  std::string description_;
};

}  // namespace tsnative
