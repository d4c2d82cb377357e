// The AOTInductor backend: a package (.pt2) that torch._inductor.aoti_compile_and_package
// wrote, run by LibTorch's AOTIModelPackageLoader. It has forward alone, which takes tensors;
// it has no optimize levels (Inductor optimized it when it compiled it) and no parameters to
// read (they are compiled into its code). What its files say of it: package.h; how its outputs
// nest: pytree_spec.h.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>
#include <c10/core/Device.h>

#include "core/backend.h"
#include "core/backends/aoti/package.h"
#include "core/backends/aoti/pytree_spec.h"
#include "core/load_options.h"

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace tsnative {

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

  // Runs forward (the model compiled for the inputs' batch alone, where the package has one):
  // checks dtype and shape against what was exported, moves the tensors to the device,
  // contiguous, and nests the outputs as the eager model returned them. Throws
  // ArgumentError for an input outside the exported shapes, InferenceError for a failure
  // inside the compiled code.
  c10::IValue run(const std::string& method, const c10::FunctionSchema& signature,
                  std::vector<c10::IValue> args) const override;
  // "none: an AOTInductor package, compiled ahead of time for <device> (<ISA>)", and whether
  // the package's own code checks its inputs.
  std::string optimization() const override { return description_; }

 private:
  AotiBackend(std::string source, c10::Device device);

  // The loader for the inputs given: the static-batch model of their batch if it admits
  // them, else loader_ (ArgumentError if it does not).
  torch::inductor::AOTIModelPackageLoader& loader_for(const std::vector<at::Tensor>& inputs) const;
  // Runs `loader` on `inputs` (checked already) and nests its outputs.
  c10::IValue call(torch::inductor::AOTIModelPackageLoader& loader,
                   std::vector<at::Tensor> inputs) const;
  // Runs every model once (its first call allocates its buffers): the one a call of `args`
  // runs on them, each other one on zeros of its shapes where they are static, else on `args`
  // if it admits them. Throws what a call of `args` throws; the zeros' runs may fail.
  void warm_up(std::vector<c10::IValue> args) const;

  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  // Models compiled for one batch size each (tsnative.export's static_batches), tried first.
  struct StaticLoader {
    int64_t batch;
    std::vector<TensorSpec> inputs;
    std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
  };
  std::vector<StaticLoader> static_loaders_;
  TreeSpec outputs_;
  std::string description_;
};

}  // namespace tsnative
