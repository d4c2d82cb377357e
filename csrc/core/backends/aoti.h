// The AOTInductor backend: a package (.pt2) that torch._inductor.aoti_compile_and_package
// wrote, run by LibTorch's AOTIModelPackageLoader. Model (model.h) holds one for a .pt2 and
// routes forward to it; everything else (metadata, top-k, images, classify) is shared.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>
#include <c10/core/Device.h>

#include "core/metadata.h"
#include "core/pytree_spec.h"

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace tsnative {

// Key of the metadata entry (aot_inductor.metadata) that describes forward's tensor arguments
// as tsnative.export saw them: [{"name", "dtype", "shape": [3, {"name", "min", "max"}, ...]}];
// a dimension is its size, or the range of a dynamic one ("max": null for no upper bound).
inline constexpr const char* kInputsMetadataKey = "tsnative.inputs";

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

class AotiPackage {
 public:
  // Loads the package at `path` for `device`. `source` names it in messages. Throws LoadError:
  // corrupt, compiled for another device, for an instruction set this CPU lacks, or for
  // arguments or outputs tsnative cannot represent.
  static std::shared_ptr<AotiPackage> load(const std::string& path, const std::string& source,
                                           const c10::Device& device);
  ~AotiPackage();

  // forward's signature: its tensor arguments (named as exported, else input_0, input_1, ...)
  // and its output's type.
  const c10::FunctionSchema& signature() const { return signature_; }
  const Metadata& metadata() const { return metadata_; }
  // "AOTInductor package (compiled for <device>, <ISA>)", and whether inputs are checked.
  const std::string& description() const { return description_; }

  // Runs forward on `args` (tensors, matching the signature): checks dtype and shape against
  // what was exported, moves them to the device, contiguous, and nests the outputs as the
  // eager model returned them. Throws ArgumentError for an input outside the exported shapes,
  // InferenceError for a failure inside the compiled code.
  c10::IValue run(const std::vector<c10::IValue>& args) const;

 private:
  AotiPackage() = default;
  void check(const std::vector<at::Tensor>& inputs) const;

  std::string source_;
  c10::Device device_ = c10::kCPU;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  Metadata metadata_;
  std::vector<TensorSpec> inputs_;  // empty if the package does not describe them
  TreeSpec outputs_;
  c10::FunctionSchema signature_{"forward", "", {}, {}};
  std::string description_;
};

}  // namespace tsnative
