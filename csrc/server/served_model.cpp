#include "server/served_model.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <utility>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/classify.h"
#include "core/errors.h"
#include "core/model_format.h"

namespace tsnative::server {

namespace {

using nlohmann::json;

int64_t config_integer(const json& value, const std::string& key, const std::string& where,
                       int64_t minimum) {
  if (!value.is_number_integer() || value.get<int64_t>() < minimum) {
    throw OptionError(where + ": '" + key + "' must be a whole number >= " +
                      std::to_string(minimum) + ", got " + value.dump());
  }
  return value.get<int64_t>();
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    text += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return text + "]";
}

// A stand-in input of a description's shape: dynamic dimensions `rows` (the first) or 1.
at::Tensor example_input(const TensorDescription& input, int64_t rows) {
  std::vector<int64_t> shape;
  for (size_t i = 0; i < input.shape.size(); ++i) {
    shape.push_back(input.shape[i] >= 0 ? input.shape[i] : (i == 0 ? rows : 1));
  }
  return at::zeros(shape, *scalar_type(input.datatype));
}

std::string format_score(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%f", value);
  return text;
}

}  // namespace

ModelConfig read_model_config(const std::string& path, ModelConfig base) {
  const auto where = tsnative::quoted(path);
  std::ifstream file(path);
  if (!file) throw OptionError("cannot read the model config " + where);
  std::stringstream text;
  text << file.rdbuf();
  json config;
  try {
    config = json::parse(text.str());
  } catch (const json::exception& e) {
    throw OptionError("the model config " + where + " is not valid JSON: " + first_line(e.what()));
  }
  if (!config.is_object()) throw OptionError("the model config " + where + " must be an object");
  for (const auto& [key, value] : config.items()) {
    if (key == "max_batch_size") {
      base.max_batch_size = config_integer(value, key, where, 0);
    } else if (key == "preferred_batch_sizes") {
      if (!value.is_array()) throw OptionError(where + ": '" + key + "' must be an array");
      base.preferred_batch_sizes.clear();
      for (const auto& size : value) {
        base.preferred_batch_sizes.push_back(config_integer(size, key, where, 1));
      }
    } else if (key == "max_queue_delay_us") {
      base.max_queue_delay_us = config_integer(value, key, where, 0);
    } else if (key == "instances") {
      base.instances = config_integer(value, key, where, 1);
    } else if (key == "optimize") {
      if (!value.is_string()) throw OptionError(where + ": 'optimize' must be a string");
      base.optimize = value.get<std::string>();
      parse_optimize_level(base.optimize);  // an unknown level is refused here, by name
    } else {
      throw OptionError(where + ": unknown key " + tsnative::quoted(key) +
                        " (max_batch_size, preferred_batch_sizes, max_queue_delay_us, instances, "
                        "optimize)");
    }
  }
  return base;
}

std::vector<std::pair<std::string, at::Tensor>> flatten_outputs(const c10::IValue& output,
                                                                const std::string& source) {
  std::vector<std::pair<std::string, at::Tensor>> flat;
  const auto not_servable = [&](const std::string& what) {
    return InferenceError(source + " returned " + what +
                          ": the server sends tensors, a tuple or list of tensors, or a dict of "
                          "them");
  };
  if (output.isTensor()) {
    flat.emplace_back("output", output.toTensor());
  } else if (output.isTuple() || output.isList()) {
    const auto elements =
        output.isTuple() ? output.toTupleRef().elements().vec() : output.toListRef().vec();
    for (size_t i = 0; i < elements.size(); ++i) {
      if (!elements[i].isTensor())
        throw not_servable("a sequence holding a " + elements[i].tagKind());
      flat.emplace_back("output_" + std::to_string(i), elements[i].toTensor());
    }
  } else if (output.isGenericDict()) {
    for (const auto& entry : output.toGenericDict()) {
      if (!entry.key().isString() || !entry.value().isTensor()) {
        throw not_servable("a dict that is not of strings to tensors");
      }
      flat.emplace_back(entry.key().toStringRef(), entry.value().toTensor());
    }
  } else {
    throw not_servable("a " + output.tagKind());
  }
  return flat;
}

ServedModel::ServedModel(std::string name, std::string version, const std::string& path,
                         ModelConfig config, LoadOptions load)
    : name_(std::move(name)), version_(std::move(version)), config_(std::move(config)) {
  load.optimize = parse_optimize_level(config_.optimize);
  model_ = Model::load(path, load);
  platform_ = model_->format() == ModelFormat::kAotInductor ? "aoti" : "torchscript";
  describe_inputs();
  warm_up();
}

void ServedModel::describe_inputs() {
  const auto& specs = model_->inputs();
  if (!specs.empty()) {
    for (const auto& spec : specs) {
      TensorDescription input{spec.name, DataType::kFp32, {}};
      const auto datatype = datatype_of(spec.dtype);
      if (!datatype) {
        throw LoadError(model_->source() + " takes " + std::string(c10::toString(spec.dtype)) +
                        " tensors, which the inference protocol cannot carry");
      }
      input.datatype = *datatype;
      for (const auto& dimension : spec.shape) input.shape.push_back(dimension.size);
      inputs_.push_back(std::move(input));
    }
  } else {
    // A file that does not describe its arguments (a TorchScript archive tsnative did not
    // export, or of several arguments): each of any datatype and shape, checked by the model.
    for (const auto& argument : model_->signature("forward").arguments()) {
      if (!argument.default_value()) inputs_.push_back({argument.name(), DataType::kFp32, {-1}});
    }
  }
  takes_images_ = inputs_.size() == 1 && model_->metadata().preprocess.has_value() &&
                  model_->metadata().preprocess->crop > 0;
}

void ServedModel::warm_up() {
  // Without its arguments described there is nothing to warm up on: served unbatched, its
  // outputs named as each call returns them.
  if (model_->inputs().empty()) return;
  std::vector<at::Tensor> one, two;
  for (const auto& input : inputs_) {
    one.push_back(example_input(input, 1));
    two.push_back(example_input(input, 2));
  }
  std::vector<std::pair<std::string, at::Tensor>> outputs;
  try {
    outputs = flatten_outputs(model_->forward({one.begin(), one.end()}), model_->source());
  } catch (const InferenceError& e) {
    throw LoadError("cannot serve " + model_->source() + ": its warm-up call failed: " + e.what());
  }
  for (const auto& [name, tensor] : outputs) {
    const auto datatype = datatype_of(tensor.scalar_type());
    if (!datatype) {
      throw LoadError("cannot serve " + model_->source() + ": its output " +
                      tsnative::quoted(name) + " is " +
                      std::string(c10::toString(tensor.scalar_type())) +
                      ", which the inference protocol cannot carry");
    }
    auto shape = tensor.sizes().vec();
    outputs_.push_back({name, *datatype, shape});
  }
  const bool batch_dynamic =
      !inputs_.empty() && !inputs_[0].shape.empty() && inputs_[0].shape[0] == -1;
  if (config_.max_batch_size < 1 || !batch_dynamic) return;
  // Stacking is right only where each output's first dimension is the batch: checked on a
  // batch of two, whose every output must have two rows (and one row above).
  try {
    const auto doubled =
        flatten_outputs(model_->forward({two.begin(), two.end()}), model_->source());
    batching_ = doubled.size() == outputs.size();
    for (size_t i = 0; batching_ && i < doubled.size(); ++i) {
      batching_ = outputs[i].second.dim() > 0 && outputs[i].second.size(0) == 1 &&
                  doubled[i].second.dim() > 0 && doubled[i].second.size(0) == 2;
    }
  } catch (const InferenceError&) {
    batching_ = false;
  }
  if (batching_) {
    for (auto& output : outputs_) output.shape[0] = -1;
  }
}

std::vector<at::Tensor> ServedModel::arguments(const InferRequest& request) const {
  std::vector<at::Tensor> arguments;
  for (const auto& given : request.inputs) {
    bool known = false;
    for (const auto& input : inputs_) known = known || input.name == given.name;
    if (!known) {
      std::string names;
      for (const auto& input : inputs_)
        names += (names.empty() ? "" : ", ") + tsnative::quoted(input.name);
      throw ProtocolError("unknown input " + tsnative::quoted(given.name) + ": " +
                          tsnative::quoted(name_) + " takes " + names);
    }
  }
  for (const auto& input : inputs_) {
    const ProtocolTensor* given = nullptr;
    for (const auto& tensor : request.inputs) {
      if (tensor.name == input.name) given = &tensor;
    }
    const auto where = "input " + tsnative::quoted(input.name);
    if (!given) throw ProtocolError(where + " is missing");
    if (given->datatype == DataType::kBytes && takes_images_) {
      // Encoded images, one per row: decoded and preprocessed as ts-infer does.
      const auto spec = preprocessing_for(model_->metadata(), {});
      std::vector<at::Tensor> images;
      for (size_t i = 0; i < given->bytes.size(); ++i) {
        const std::vector<uint8_t> bytes(given->bytes[i].begin(), given->bytes[i].end());
        const auto image_name = where + " element " + std::to_string(i);
        try {
          images.push_back(preprocess(decode_image_bytes(bytes, image_name, spec.color), spec));
        } catch (const Error& e) {
          throw ProtocolError(e.what());
        }
      }
      if (images.empty()) throw ProtocolError(where + " holds no images");
      arguments.push_back(at::stack(images));
      continue;
    }
    const bool described = !model_->inputs().empty();
    if (described && given->datatype != input.datatype) {
      throw ProtocolError(where + " must be " + datatype_name(input.datatype) + ", got " +
                          datatype_name(given->datatype) +
                          (takes_images_ ? " (or BYTES: encoded JPEG or PNG images)" : ""));
    }
    bool fits = !described || given->shape.size() == input.shape.size();
    for (size_t i = 0; described && fits && i < input.shape.size(); ++i) {
      fits = input.shape[i] == -1 || input.shape[i] == given->shape[i];
    }
    if (!fits) {
      throw ProtocolError(where + " has shape " + shape_text(given->shape) + ", " +
                          tsnative::quoted(name_) + " takes " + shape_text(input.shape));
    }
    if (given->datatype == DataType::kBytes) {
      throw ProtocolError(where + " is BYTES, which " + tsnative::quoted(name_) +
                          " does not take (a model of tensors" +
                          (model_->metadata().preprocess ? "" : ", not images") + ")");
    }
    arguments.push_back(given->tensor);
  }
  if (batching_) {
    for (const auto& argument : arguments) {
      if (argument.dim() == 0 || argument.size(0) != arguments[0].size(0) ||
          argument.size(0) == 0) {
        throw ProtocolError("the inputs of a request to " + tsnative::quoted(name_) +
                            " must have the same number of rows (at least one), their first "
                            "dimension");
      }
    }
  }
  return arguments;
}

std::vector<at::Tensor> ServedModel::run(const std::vector<at::Tensor>& arguments) const {
  const auto output = model_->forward({arguments.begin(), arguments.end()});
  std::vector<at::Tensor> outputs;
  for (auto& [name, tensor] : flatten_outputs(output, model_->source())) {
    outputs.push_back(tensor.cpu());
  }
  return outputs;
}

std::vector<ProtocolTensor> ServedModel::respond(const InferRequest& request,
                                                 const std::vector<at::Tensor>& outputs,
                                                 std::vector<bool>& binary) const {
  // Output names as warm-up found them, or (never warmed up) as this call's output gives them.
  std::vector<std::string> names;
  for (size_t i = 0; i < outputs.size(); ++i) {
    names.push_back(i < outputs_.size()
                        ? outputs_[i].name
                        : (outputs.size() == 1 ? "output" : "output_" + std::to_string(i)));
  }
  std::vector<RequestedOutput> wanted = request.outputs;
  if (wanted.empty()) {
    for (const auto& name : names) wanted.push_back({name, std::nullopt, 0});
  }
  std::vector<ProtocolTensor> response;
  binary.clear();
  for (const auto& requested : wanted) {
    size_t index = names.size();
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == requested.name) index = i;
    }
    if (index == names.size()) {
      std::string known;
      for (const auto& name : names) known += (known.empty() ? "" : ", ") + tsnative::quoted(name);
      throw ProtocolError("unknown output " + tsnative::quoted(requested.name) + ": " +
                          tsnative::quoted(name_) + " has " + known);
    }
    const auto& tensor = outputs[index];
    ProtocolTensor out;
    out.name = requested.name;
    binary.push_back(requested.binary_data.value_or(request.binary_data_output));
    if (requested.classification > 0) {
      // Triton's classification extension: the k largest values of the last dimension as
      // "value:index:label" strings (the raw output, not a softmax).
      if (!tensor.is_floating_point() || tensor.dim() < 1 || tensor.size(-1) < 1) {
        throw ProtocolError("output " + tsnative::quoted(requested.name) +
                            " is not class scores: classification needs a floating-point tensor");
      }
      const auto classes = tensor.size(-1);
      if (requested.classification > classes) {
        throw ProtocolError("output " + tsnative::quoted(requested.name) + " has " +
                            std::to_string(classes) + " classes, fewer than the " +
                            std::to_string(requested.classification) + " asked for");
      }
      const auto [values, indices] = at::topk(tensor.to(at::kDouble), requested.classification, -1);
      const auto flat_values = values.contiguous().reshape({-1});
      const auto flat_indices = indices.contiguous().reshape({-1});
      const auto& labels = model_->metadata().labels;
      for (int64_t i = 0; i < flat_values.numel(); ++i) {
        const auto class_index = flat_indices[i].item<int64_t>();
        auto text = format_score(flat_values[i].item<double>()) + ":" + std::to_string(class_index);
        if (static_cast<size_t>(class_index) < labels.size()) text += ":" + labels[class_index];
        out.bytes.push_back(std::move(text));
      }
      out.datatype = DataType::kBytes;
      out.shape = values.sizes().vec();
    } else {
      const auto datatype = datatype_of(tensor.scalar_type());
      if (!datatype) {
        throw ProtocolError("output " + tsnative::quoted(requested.name) + " is " +
                                std::string(c10::toString(tensor.scalar_type())) +
                                ", which the inference protocol cannot carry",
                            500);
      }
      out.datatype = *datatype;
      out.tensor = tensor.contiguous();
      out.shape = tensor.sizes().vec();
    }
    response.push_back(std::move(out));
  }
  return response;
}

}  // namespace tsnative::server
