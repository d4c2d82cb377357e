#include "core/backends/aoti/backend.h"

#include <cstdlib>
#include <utility>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include "core/errors.h"
#include "core/runtime.h"

namespace tsnative {

namespace {

std::unique_ptr<torch::inductor::AOTIModelPackageLoader> open_model(const std::string& path,
                                                                    const std::string& model,
                                                                    const c10::Device& device) {
  return std::make_unique<torch::inductor::AOTIModelPackageLoader>(
      path, model, /*run_single_threaded=*/false, /*num_runners=*/1,
      device.is_cpu() ? c10::DeviceIndex{-1} : device.index());
}

// Zeros of `specs`' shapes, to warm up a model; none if a shape is dynamic or too large to
// make (the package's metadata is a guess, as a warm-up input made from it).
std::vector<at::Tensor> zeros_for(const std::vector<TensorSpec>& specs) {
  std::vector<at::Tensor> inputs;
  for (const auto& spec : specs) {
    std::vector<int64_t> sizes;
    for (const auto& dimension : spec.shape) sizes.push_back(dimension.size);
    if (!warmup_shape_fits(sizes)) return {};
    try {
      inputs.push_back(at::zeros(sizes, at::TensorOptions().dtype(spec.dtype)));
    } catch (const c10::Error&) {
      return {};
    }
  }
  return inputs;
}

std::vector<at::Tensor> tensors_of(const std::vector<c10::IValue>& args) {
  std::vector<at::Tensor> tensors;
  tensors.reserve(args.size());
  for (const auto& arg : args) tensors.push_back(arg.toTensor());
  return tensors;
}

}  // namespace

AotiBackend::AotiBackend(std::string source, c10::Device device)
    : Backend(std::move(source), device,
              "an AOTInductor package has compiled them into its code; read them from the "
              "eager model, or from a TorchScript export") {}

AotiBackend::~AotiBackend() = default;

std::unique_ptr<AotiBackend> AotiBackend::load(const std::string& path, const std::string& source,
                                               const c10::Device& device,
                                               const LoadOptions& options) {
  if (path.empty()) {
    throw UnsupportedFormatError(
        source +
        " is an AOTInductor package, which loads from a file (its compiled code is a "
        "shared library): save it and load its path");
  }
  if (options.optimize != OptimizeLevel::kNone) {
    // Both front ends reach this: the message names the level as each of them spells it.
    const std::string level = optimize_level_name(options.optimize);
    throw OptionError("optimize level '" + level + "' (optimize='" + level + "', --optimize " +
                      level + ") applies to TorchScript models, and " + source +
                      " is an AOTInductor package, compiled and optimized ahead of time: load "
                      "it at level 'none' (for bfloat16, export it from a bfloat16 model)");
  }
  std::unique_ptr<AotiBackend> package(new AotiBackend(source, device));
  auto description = read_package(path, source, device);
  if (description.inputs.empty()) {
    // A package tsnative did not export says nothing of its inputs' shapes: have its own code
    // check them (read once by each package's code, on its first call; process-wide).
    setenv("AOTI_RUNTIME_CHECK_INPUTS", "1", /*overwrite=*/0);
  }
  package->inputs_ = std::move(description.inputs);
  package->metadata_ = std::move(description.metadata);
  package->description_ = std::move(description.description);
  std::vector<std::string> call_spec;
  try {
    package->loader_ = open_model(path, kPackageModelName, device);
    call_spec = package->loader_->get_call_spec();
    for (auto& model : description.static_models) {
      package->static_loaders_.push_back(
          {model.batch, std::move(model.inputs), open_model(path, model.name, device)});
    }
  } catch (const c10::Error& e) {
    throw LoadError("cannot load " + source +
                    " as an AOTInductor package: " + first_line(e.what_without_backtrace()));
  }
  std::vector<c10::Argument> arguments;
  try {
    if (call_spec.size() != 2) throw std::invalid_argument("no call spec");
    const auto in_spec = parse_tree_spec(call_spec[0]);
    package->outputs_ = parse_tree_spec(call_spec[1]);
    // (args, kwargs): forward's positional arguments, each a tensor.
    const bool flat_args = in_spec.kind == TreeSpec::Kind::kTuple && in_spec.children.size() == 2 &&
                           in_spec.children[0].kind == TreeSpec::Kind::kTuple &&
                           in_spec.children[1].leaves() == 0 &&
                           in_spec.children[0].leaves() == in_spec.children[0].children.size();
    if (!flat_args) {
      throw std::invalid_argument(
          "forward takes nested or keyword-only arguments (tsnative runs packages whose "
          "forward takes tensors, by position)");
    }
    const auto count = in_spec.children[0].children.size();
    if (!package->inputs_.empty() && package->inputs_.size() != count) {
      throw std::invalid_argument("its '" + std::string(kInputsMetadataKey) + "' describes " +
                                  std::to_string(package->inputs_.size()) +
                                  " inputs and forward takes " + std::to_string(count));
    }
    for (size_t i = 0; i < count; ++i) {
      arguments.emplace_back(
          package->inputs_.empty() ? "input_" + std::to_string(i) : package->inputs_[i].name,
          c10::TensorType::get());
    }
  } catch (const std::exception& e) {
    throw LoadError("cannot load " + source + ": " + first_line(e.what()));
  }
  package->signatures_.emplace(
      "forward", c10::FunctionSchema("forward", "", std::move(arguments),
                                     {c10::Argument("", tree_type(package->outputs_))}));
  // Its first call allocates the package's buffers; made here, as a TorchScript load warms up.
  std::vector<std::string> notes;
  const auto inputs = warmup_inputs(options, package->metadata_, notes);
  if (!inputs.empty()) {
    try {
      package->warm_up(inputs);
    } catch (const InferenceError& e) {
      // Inputs the caller gave must work; an input guessed from the metadata may not fit.
      if (!options.warmup_inputs.empty()) {
        throw InferenceError("warming up " + source + " failed: " + e.what());
      }
    }
  }
  for (const auto& note : notes) package->description_ += "; " + note;
  return package;
}

c10::IValue AotiBackend::run(const std::string&, const c10::FunctionSchema& signature,
                             std::vector<c10::IValue> args) const {
  check_arguments(signature, args);
  auto inputs = tensors_of(args);
  auto& loader = loader_for(inputs);  // before the call's argument takes `inputs` away
  return call(loader, std::move(inputs));
}

void AotiBackend::warm_up(std::vector<c10::IValue> args) const {
  check_arguments(signatures_.at("forward"), args);
  const auto inputs = tensors_of(args);
  auto* reached = &loader_for(inputs);
  call(*reached, inputs);
  std::vector<std::pair<torch::inductor::AOTIModelPackageLoader*, const std::vector<TensorSpec>*>>
      others{{loader_.get(), &inputs_}};
  for (const auto& model : static_loaders_) others.emplace_back(model.loader.get(), &model.inputs);
  for (const auto& [loader, specs] : others) {
    if (loader == reached) continue;
    auto zeros = zeros_for(*specs);
    if (!zeros.empty()) {
      try {
        call(*loader, std::move(zeros));
      } catch (const InferenceError&) {
        // zeros are a guess at a valid input: the model's first call allocates instead
      }
    } else if (admits(*specs, inputs)) {
      call(*loader, inputs);
    }
  }
}

c10::IValue AotiBackend::call(torch::inductor::AOTIModelPackageLoader& loader,
                              std::vector<at::Tensor> inputs) const {
  // The compiled kernels index their inputs as contiguous tensors on the package's device.
  for (auto& input : inputs) input = input.to(device_).contiguous();
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> outputs;
  try {
    outputs = loader.run(inputs);
  } catch (const c10::Error& e) {
    throw InferenceError("forward() failed: " + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw InferenceError("forward() failed: " + first_line(e.what()));
  }
  try {
    return unflatten(outputs_, std::move(outputs));
  } catch (const std::exception& e) {
    throw InferenceError("forward() of " + source_ + " returned what its call spec does not " +
                         "describe: " + e.what());
  }
}

torch::inductor::AOTIModelPackageLoader& AotiBackend::loader_for(
    const std::vector<at::Tensor>& inputs) const {
  if (!inputs.empty() && inputs[0].dim() > 0) {
    for (const auto& model : static_loaders_) {
      if (model.batch == inputs[0].size(0)) {
        if (admits(model.inputs, inputs)) return *model.loader;
        break;
      }
    }
  }
  check_inputs(inputs_, inputs);
  return *loader_;
}

}  // namespace tsnative
