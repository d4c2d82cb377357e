// Model: a model file loaded once, in eval mode, on one device, callable from many threads at
// once. load(path, options) -> run(method, args) -> outputs. What every front end holds,
// whatever the format: a TorchScript archive (.pt: backends/torchscript/) or an AOTInductor
// package (.pt2: backends/aoti/), told apart by the file's contents, each run by its backend
// (backend.h).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>
#include <c10/core/Device.h>
#include <caffe2/serialize/read_adapter_interface.h>

#include "core/load_options.h"
#include "core/metadata.h"
#include "core/model_format.h"
#include "core/tensor_spec.h"

namespace tsnative {

class Backend;

class Model {
 public:
  // Loads a TorchScript archive onto options.device, puts it in eval mode, applies
  // options.optimize and warms it up; or an AOTInductor package, which has only forward,
  // takes tensors, and has no optimize levels (Inductor optimized it when it was compiled). With
  // several variants to choose from, the fastest on the warm-up inputs is kept; without warm-up
  // inputs, the first call of forward times them on its arguments (that call takes longer) and
  // keeps the fastest from then on. Throws LoadError (missing file, not a model, newer format,
  // unavailable device, a package compiled for another device or CPU) or OptionError (malformed
  // options, or an optimize level for a package).
  static std::shared_ptr<Model> load(const std::string& path, const LoadOptions& options = {});

  // Loads a TorchScript archive held in memory: `size` bytes at `data`, read in place (they
  // must stay valid during the call, not after it). Messages describe it by its size and first
  // bytes; path() is "". Throws as load() does, and UnsupportedFormatError for an AOTInductor
  // package (its compiled code is a shared library, loaded from a file).
  static std::shared_ptr<Model> load_from_memory(const void* data, size_t size,
                                                 const LoadOptions& options = {});

  // Runs a method with autograd off. Tensors in args are moved to the model's device.
  // Throws InferenceError (unknown method, error inside the model) or ArgumentError.
  c10::IValue run(const std::string& method, std::vector<c10::IValue> args) const;

  // Runs a method of a TorchScript class instance that one of this model's methods returned
  // (see script_object.h), as run() runs the model's own: the same argument checks, device
  // moves, autograd off and errors. Throws InferenceError if its class has no such method.
  c10::IValue run_object_method(const c10::intrusive_ptr<c10::ivalue::Object>& object,
                                const std::string& method, std::vector<c10::IValue> args) const;

  // Shorthand for run("forward", args).
  c10::IValue forward(std::vector<c10::IValue> args) const;

  // Names of the module's methods ("forward" and any @torch.jit.export'ed ones), sorted.
  std::vector<std::string> methods() const;

  // Whether the module has a method of that name.
  bool has_method(const std::string& method) const;

  // The method's signature without `self`, for front ends that convert arguments.
  // Throws InferenceError if there is no such method.
  const c10::FunctionSchema& signature(const std::string& method) const;

  // The module's parameters and buffers, by dotted name ("layer1.0.conv1.weight"), as saved:
  // detached, sharing memory with the model. Throws InferenceError for an optimized model,
  // whose weights freezing has folded into its graph.
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  std::vector<std::pair<std::string, at::Tensor>> named_buffers() const;

  // The other attributes (neither tensors nor submodules, nor the training flag: every module
  // runs in eval mode), by dotted name, as saved. Throws as named_parameters() does.
  std::vector<std::pair<std::string, c10::IValue>> attributes() const;

  // What the archive says about itself (labels, preprocessing); empty if it carries nothing.
  const Metadata& metadata() const;

  // What forward's tensor arguments take (name, dtype, static and dynamic sizes), where the file
  // records it: an AOTInductor package tsnative.export wrote, or a TorchScript archive it wrote
  // of a forward with one argument without a default (its example's dtype and shape, the first
  // dimension free). Empty otherwise.
  const std::vector<TensorSpec>& inputs() const;

  // Which variant runs (see backends/torchscript/variants.h), the timings that chose it, and any
  // fallback notes; before a first-call choice, the candidates it will time.
  std::string optimization() const;

  // The file's format: kTorchScript or kAotInductor.
  ModelFormat format() const { return format_; }
  const std::string& path() const { return path_; }  // "" for a model loaded from memory
  // How messages name the model: its quoted path, or what was loaded from memory.
  const std::string& source() const;
  const c10::Device& device() const;

  ~Model();

 private:
  Model(std::string path, ModelFormat format, std::unique_ptr<const Backend> backend);
  // Picks the backend for what `archive` holds (a file at `path`, or memory if path is "") and
  // loads it. `source` names the model in messages.
  static std::shared_ptr<Model> load_archive(
      const std::string& path, const std::string& source, const c10::Device& device,
      const LoadOptions& options,
      const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& archive);
  const c10::FunctionSchema& find(const std::string& method) const;

  std::string path_;
  ModelFormat format_;
  std::unique_ptr<const Backend> backend_;
};

}  // namespace tsnative
