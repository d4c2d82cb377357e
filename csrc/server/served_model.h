// One model as the server serves it: the core's Model, loaded and warmed up, described in the
// protocol's terms (inputs and outputs by name, datatype and shape, -1 where dynamic), and the
// conversions between a request's tensors and forward's arguments and outputs. Whether
// requests may be stacked into one call is found out at load, not assumed: forward runs on a
// batch of one and of two, and every output must follow the batch.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>

#include "core/load_options.h"
#include "core/model.h"
#include "server/protocol.h"

namespace tsnative::server {

// How one model is served: set for every model by `ts-infer serve`'s flags, per model by its
// config file (see read_model_config).
struct ModelConfig {
  int64_t max_batch_size = 32;                 // rows one forward call may stack; 0: no batching
  std::vector<int64_t> preferred_batch_sizes;  // run as soon as a batch reaches one of these
  int64_t max_queue_delay_us = 0;              // how long a request may wait for others to join it
  int64_t instances = 1;                       // threads running forward, sharing the weights
  std::string optimize = "none";               // the core's optimize level (a TorchScript model)
};

// `base` with what the JSON file at `path` sets ({"max_batch_size": 8, "instances": 2, ...}).
// Throws OptionError naming the file and the key (unknown keys included: a typo must not pass
// as a default).
ModelConfig read_model_config(const std::string& path, ModelConfig base);

// An input or output as the model metadata shows it.
struct TensorDescription {
  std::string name;
  DataType datatype = DataType::kFp32;
  std::vector<int64_t> shape;  // -1 for a dynamic dimension
};

class ServedModel {
 public:
  // Loads the model file at `path` (the core's Model::load, with config.optimize), describes
  // it and warms it up. Throws the core's LoadError / OptionError, or LoadError for a model
  // the protocol cannot carry (outputs that are not tensors).
  ServedModel(std::string name, std::string version, const std::string& path, ModelConfig config,
              LoadOptions load);

  const std::string& name() const { return name_; }
  const std::string& version() const { return version_; }
  const ModelConfig& config() const { return config_; }
  const Model& model() const { return *model_; }
  // "torchscript" or "aoti": the model file's format.
  const std::string& platform() const { return platform_; }
  const std::vector<TensorDescription>& inputs() const { return inputs_; }
  const std::vector<TensorDescription>& outputs() const { return outputs_; }
  // Whether requests are stacked along dim 0 (config allows it and the outputs follow it).
  bool batching() const { return batching_; }
  // Whether an image model takes encoded JPEG / PNG files as a BYTES input.
  bool takes_images() const { return takes_images_; }

  // forward's arguments for a request, in forward's order: its tensors checked against the
  // inputs' names, datatypes and shapes, images decoded and preprocessed. Throws
  // ProtocolError naming the input.
  std::vector<at::Tensor> arguments(const InferRequest& request) const;

  // Runs forward on arguments (one request's, or several stacked): its outputs in outputs()'s
  // order. Throws the core's InferenceError.
  std::vector<at::Tensor> run(const std::vector<at::Tensor>& arguments) const;

  // The response's tensors from a request's outputs: those it asked for (all by default),
  // classification applied; binary[i] says whether the i-th goes as raw bytes. Throws
  // ProtocolError for an unknown output or a classification of something that is not scores.
  std::vector<ProtocolTensor> respond(const InferRequest& request,
                                      const std::vector<at::Tensor>& outputs,
                                      std::vector<bool>& binary) const;

 private:
  void describe_inputs();
  void warm_up();

  std::string name_, version_, platform_;
  ModelConfig config_;
  std::shared_ptr<Model> model_;
  std::vector<TensorDescription> inputs_, outputs_;
  bool batching_ = false;
  bool takes_images_ = false;
};

// A model's outputs as a flat list of tensors with their names: a tensor is "output", a tuple
// or list "output_0", "output_1", ..., a dict its keys. Throws InferenceError for anything else.
std::vector<std::pair<std::string, at::Tensor>> flatten_outputs(const c10::IValue& output,
                                                                const std::string& source);

}  // namespace tsnative::server
