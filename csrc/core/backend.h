// What runs the model files of one format behind Model (model.h): a TorchScript archive
// (backends/torchscript/) or an AOTInductor package (backends/aoti/). Model does what is the
// same for every format -- the file, its format, which method a call names, the errors for a
// method it lacks -- and a backend runs the calls. What a format lacks is said here, once.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>
#include <c10/core/Device.h>
#include <c10/util/ArrayRef.h>

#include "core/load_options.h"
#include "core/metadata.h"
#include "core/tensor_spec.h"

namespace tsnative {

class Backend {
 public:
  virtual ~Backend() = default;

  // The methods' signatures without `self`, by name.
  const std::unordered_map<std::string, c10::FunctionSchema>& signatures() const {
    return signatures_;
  }
  // What the file says about itself (labels, preprocessing); empty if it carries nothing.
  const Metadata& metadata() const { return metadata_; }
  // What forward's tensor arguments take, where the file says (see Model::inputs()).
  const std::vector<TensorSpec>& inputs() const { return inputs_; }
  // How messages name the model; the device it runs on.
  const std::string& source() const { return source_; }
  const c10::Device& device() const { return device_; }

  // Runs `method`, whose signature (from signatures()) is `signature`, with autograd off;
  // tensors in args go to the model's device. Throws ArgumentError (args that do not fit the
  // signature) or InferenceError (an error inside the model).
  virtual c10::IValue run(const std::string& method, const c10::FunctionSchema& signature,
                          std::vector<c10::IValue> args) const = 0;

  // Which variant runs and how it was chosen, or what the file was compiled for.
  virtual std::string optimization() const = 0;

  // What only a TorchScript module has (see model.h); by default, an InferenceError naming
  // what this format lacks.
  virtual std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  virtual std::vector<std::pair<std::string, at::Tensor>> named_buffers() const;
  virtual std::vector<std::pair<std::string, c10::IValue>> attributes() const;
  virtual c10::IValue run_object_method(const c10::intrusive_ptr<c10::ivalue::Object>& object,
                                        const std::string& method,
                                        std::vector<c10::IValue> args) const;

 protected:
  // `source` names the model in messages; `lacks` says why the format has no parameters,
  // buffers or attributes to read (the end of "the parameters of <source> cannot be read: "),
  // for a backend that does not override their readers.
  Backend(std::string source, c10::Device device, std::string lacks = "")
      : source_(std::move(source)), device_(device), lacks_(std::move(lacks)) {}

  std::string source_;
  c10::Device device_;
  Metadata metadata_;
  std::vector<TensorSpec> inputs_;
  std::unordered_map<std::string, c10::FunctionSchema> signatures_;

 private:
  // Throws InferenceError: `what` ("the parameters") cannot be read, and why.
  [[noreturn]] void lacking(const char* what) const;

  std::string lacks_;
};

// Checks `args` against `signature` (without self: it counts what the caller gave), filling in
// defaults. Throws ArgumentError.
void check_arguments(const c10::FunctionSchema& signature, std::vector<c10::IValue>& args);

// The most elements a warm-up input made from a guess (a file's metadata) may have: a corrupt
// file's shape, found by fuzzing, asked for 120 GB.
inline constexpr uint64_t kMaxWarmupElements = uint64_t{1} << 26;  // 256 MiB of float32

// Whether a warm-up input of `shape`, a guess from a file's metadata, is small enough to make
// (at most kMaxWarmupElements, counted without overflowing).
bool warmup_shape_fits(c10::IntArrayRef shape);

// The arguments of forward a load warms the model up on: the caller's, or an input made from
// the metadata's input_shape for an image model (unless it is absurdly large: then `notes`
// says so), or none.
std::vector<c10::IValue> warmup_inputs(const LoadOptions& options, const Metadata& metadata,
                                       std::vector<std::string>& notes);

}  // namespace tsnative
