#include "core/backends/aoti.h"

#include <sys/utsname.h>

#include <cstdlib>
#include <map>
#include <sstream>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <nlohmann/json.hpp>

#include "core/errors.h"
#include "core/model.h"
#include "core/runtime.h"

namespace tsnative {
namespace {

using Json = nlohmann::json;

// The model aoti_compile_and_package writes for one exported program.
constexpr const char* kModelName = "model";

std::string value_of(const std::unordered_map<std::string, std::string>& map,
                     const std::string& key) {
  const auto found = map.find(key);
  return found == map.end() ? "" : found->second;
}

// The cpuinfo capabilities each word of the package's AOTI_CPU_ISA (Inductor's vector ISA:
// "AVX2", "AVX512 AVX512_VNNI", "AVX512 AVX512_VNNI AMX_TILE") compiled its kernels for.
const std::map<std::string, std::vector<std::string>>& isa_capabilities() {
  static const std::map<std::string, std::vector<std::string>> table{
      {"AVX2", {"avx2", "fma3"}},
      {"AVX512", {"avx512_f", "avx512_dq", "avx512_vl", "avx512_bw"}},
      {"AVX512_VNNI", {"avx512_vnni"}},
      {"AMX_TILE", {"amx_tile", "amx_bf16", "amx_int8"}},
  };
  return table;
}

constexpr const char* kExportAgain =
    "export it again on this machine, or on one with the same instruction set";

}  // namespace

std::string platform_problem(const std::unordered_map<std::string, std::string>& metadata,
                             const c10::Device& device,
                             const std::function<bool(const std::string&)>& cpu_has) {
  const auto compiled_for = value_of(metadata, "AOTI_DEVICE_KEY");
  const auto wanted = c10::DeviceTypeName(device.type(), /*lower_case=*/true);
  if (!compiled_for.empty() && compiled_for != wanted) {
    return "it was compiled for " + compiled_for + ", not " + wanted +
           " (AOTInductor compiles for one device: load it on " + compiled_for + " (device='" +
           compiled_for + "', --device " + compiled_for + "), or export it again for " + wanted +
           ")";
  }
  utsname host{};
  const auto machine = value_of(metadata, "AOTI_MACHINE");
  if (uname(&host) == 0 && !machine.empty() && machine != host.machine) {
    return "it was compiled for " + machine + " and this machine is " + host.machine;
  }
  if (!device.is_cpu()) return "";
  std::istringstream words(value_of(metadata, "AOTI_CPU_ISA"));
  for (std::string word; words >> word;) {
    const auto found = isa_capabilities().find(word);
    if (found == isa_capabilities().end()) continue;
    for (const auto& capability : found->second) {
      if (!cpu_has(capability)) {
        return "it was compiled for CPUs with " + word + " and this CPU lacks " + capability +
               " (" + kExportAgain + ")";
      }
    }
  }
  std::istringstream flags(value_of(metadata, kCpuFlagsMetadataKey));
  for (std::string flag; flags >> flag;) {
    if (!cpu_has(flag)) {
      return "it was compiled for CPUs with " + flag + " and this CPU lacks it (" + kExportAgain +
             ")";
    }
  }
  return "";
}

namespace {

// As Python names it: "float32", "int64", "bfloat16".
std::string dtype_name(c10::ScalarType dtype) {
  return std::string(c10::getDtypeNames(dtype).first);
}

c10::ScalarType dtype_named(const std::string& name) {
#define TSNATIVE_DTYPE_NAMED(_, type)              \
  if (dtype_name(c10::ScalarType::type) == name) { \
    return c10::ScalarType::type;                  \
  }
  AT_FORALL_SCALAR_TYPES_WITH_COMPLEX_AND_QINTS(TSNATIVE_DTYPE_NAMED)
#undef TSNATIVE_DTYPE_NAMED
  throw std::invalid_argument("an unknown dtype '" + name + "'");
}

std::vector<TensorSpec> parse_inputs(const std::string& json) {
  std::vector<TensorSpec> inputs;
  for (const auto& entry : Json::parse(json)) {
    TensorSpec spec{
        entry.at("name").get<std::string>(), dtype_named(entry.at("dtype").get<std::string>()), {}};
    for (const auto& dimension : entry.at("shape")) {
      if (dimension.is_number_integer()) {
        spec.shape.push_back({dimension.get<int64_t>()});
      } else {
        const auto& max = dimension.at("max");
        spec.shape.push_back({-1, dimension.at("name").get<std::string>(),
                              dimension.at("min").get<int64_t>(),
                              max.is_null() ? -1 : max.get<int64_t>()});
      }
    }
    inputs.push_back(std::move(spec));
  }
  return inputs;
}

// "float32[batch, 3, 32, 32]"
std::string describe(const TensorSpec& spec) {
  std::string text = dtype_name(spec.dtype) + "[";
  for (size_t i = 0; i < spec.shape.size(); ++i) {
    const auto& dimension = spec.shape[i];
    text +=
        (i ? ", " : "") + (dimension.size >= 0 ? std::to_string(dimension.size) : dimension.name);
  }
  return text + "]";
}

std::string describe(const at::Tensor& tensor) {
  return dtype_name(tensor.scalar_type()) + c10::str(tensor.sizes());
}

// Why `tensor` is not an input `spec` takes; "" if it is.
std::string mismatch(const TensorSpec& spec, const at::Tensor& tensor) {
  if (tensor.scalar_type() != spec.dtype) return "its dtype";
  if (tensor.dim() != static_cast<int64_t>(spec.shape.size())) {
    return "its number of dimensions";
  }
  for (size_t i = 0; i < spec.shape.size(); ++i) {
    const auto& dimension = spec.shape[i];
    const auto size = tensor.size(static_cast<int64_t>(i));
    if (dimension.size >= 0 && size != dimension.size) {
      return "dimension " + std::to_string(i) + " (exported as " + std::to_string(dimension.size) +
             ")";
    }
    if (dimension.size < 0 &&
        (size < dimension.min || (dimension.max >= 0 && size > dimension.max))) {
      return "dimension " + std::to_string(i) + " (" + dimension.name + " was exported for " +
             std::to_string(dimension.min) + " to " +
             (dimension.max < 0 ? "any size" : std::to_string(dimension.max)) + ")";
    }
  }
  return "";
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
  std::unordered_map<std::string, std::string> metadata;
  try {
    // Read from the package's files before its compiled code is loaded: code built for another
    // device or instruction set must not run at all (an unknown instruction kills the process).
    metadata =
        torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, kModelName);
  } catch (const c10::Error& e) {
    throw LoadError("cannot load " + source +
                    " as an AOTInductor package: " + first_line(e.what_without_backtrace()));
  }
  if (const auto problem = platform_problem(metadata, device); !problem.empty()) {
    throw LoadError("cannot load " + source + ": " + problem);
  }
  const auto inputs_json = value_of(metadata, kInputsMetadataKey);
  if (inputs_json.empty()) {
    // A package tsnative did not export says nothing of its inputs' shapes: have its own code
    // check them (read once by each package's code, on its first call; process-wide).
    setenv("AOTI_RUNTIME_CHECK_INPUTS", "1", /*overwrite=*/0);
  }
  std::vector<std::string> call_spec;
  try {
    package->loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
        path, kModelName, /*run_single_threaded=*/false, /*num_runners=*/1,
        device.is_cpu() ? c10::DeviceIndex{-1} : device.index());
    call_spec = package->loader_->get_call_spec();
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
    if (!inputs_json.empty()) package->inputs_ = parse_inputs(inputs_json);
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
  const auto metadata_json = value_of(metadata, kMetadataFile);
  if (!metadata_json.empty()) package->metadata_ = parse_metadata(metadata_json, source);
  const auto isa = value_of(metadata, "AOTI_CPU_ISA");
  package->description_ = "none: an AOTInductor package, compiled ahead of time for " +
                          value_of(metadata, "AOTI_DEVICE_KEY") +
                          (isa.empty() ? "" : " (" + isa + ")") +
                          (inputs_json.empty() ? "; inputs checked by the package's own code" : "");
  // Its first call allocates the package's buffers; made here, as a TorchScript load warms up.
  std::vector<std::string> notes;
  const auto inputs = warmup_inputs(options, package->metadata_, notes);
  if (!inputs.empty()) {
    try {
      package->run("forward", package->signatures_.at("forward"), inputs);
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

void AotiBackend::check(const std::vector<at::Tensor>& inputs) const {
  for (size_t i = 0; i < inputs_.size(); ++i) {
    if (const auto problem = mismatch(inputs_[i], inputs[i]); !problem.empty()) {
      throw ArgumentError("forward() argument '" + inputs_[i].name + "' was exported as " +
                          describe(inputs_[i]) + " and got " + describe(inputs[i]) + ": " +
                          problem + " differs; a package runs only the dtypes and shapes it was " +
                          "compiled for (export again with another example, or to .pt)");
    }
  }
}

c10::IValue AotiBackend::run(const std::string&, const c10::FunctionSchema& signature,
                             std::vector<c10::IValue> args) const {
  check_arguments(signature, args);
  std::vector<at::Tensor> inputs;
  inputs.reserve(args.size());
  for (const auto& arg : args) inputs.push_back(arg.toTensor());
  check(inputs);
  // The compiled kernels index their inputs as contiguous tensors on the package's device.
  for (auto& input : inputs) input = input.to(device_).contiguous();
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> outputs;
  try {
    outputs = loader_->run(inputs);
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

}  // namespace tsnative
