#include "core/backends/aoti/package.h"

#include <sys/utsname.h>

#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <nlohmann/json.hpp>

#include "core/errors.h"

namespace tsnative {
namespace {

using Json = nlohmann::json;

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

// The first of `inputs` (as many as `specs`) that `specs` does not admit, and why; none if
// they admit them all.
std::optional<std::pair<size_t, std::string>> first_mismatch(
    const std::vector<TensorSpec>& specs, const std::vector<at::Tensor>& inputs) {
  for (size_t i = 0; i < specs.size() && i < inputs.size(); ++i) {
    if (auto problem = mismatch(specs[i], inputs[i]); !problem.empty()) {
      return std::make_pair(i, std::move(problem));
    }
  }
  return std::nullopt;
}

}  // namespace

std::vector<TensorSpec> parse_inputs(const std::string& json) {
  std::vector<TensorSpec> inputs;
  for (const auto& entry : Json::parse(json)) {
    TensorSpec spec{
        entry.at("name").get<std::string>(), dtype_named(entry.at("dtype").get<std::string>()), {}};
    for (const auto& dimension : entry.at("shape")) {
      if (dimension.is_number_integer()) {
        const auto size = dimension.get<int64_t>();
        if (size < 0) throw std::invalid_argument("a negative size in " + spec.name + "'s shape");
        spec.shape.push_back({size});
      } else {
        const auto& max = dimension.at("max");
        TensorSpec::Dimension range{-1, dimension.at("name").get<std::string>(),
                                    dimension.at("min").get<int64_t>(),
                                    max.is_null() ? -1 : max.get<int64_t>()};
        if (range.min < 0 || (!max.is_null() && (range.max < 0 || range.max < range.min))) {
          throw std::invalid_argument("an empty or negative range for " + spec.name + "'s " +
                                      range.name);
        }
        spec.shape.push_back(std::move(range));
      }
    }
    inputs.push_back(std::move(spec));
  }
  return inputs;
}

bool admits(const std::vector<TensorSpec>& specs, const std::vector<at::Tensor>& inputs) {
  return specs.size() == inputs.size() && !first_mismatch(specs, inputs);
}

std::string static_model_name(int64_t batch) { return "batch_" + std::to_string(batch); }

void check_inputs(const std::vector<TensorSpec>& specs, const std::vector<at::Tensor>& inputs) {
  if (const auto found = first_mismatch(specs, inputs)) {
    const auto& [i, problem] = *found;
    throw ArgumentError("forward() argument '" + specs[i].name + "' was exported as " +
                        describe(specs[i]) + " and got " + describe(inputs[i]) + ": " + problem +
                        " differs; a package runs only the dtypes and shapes it was " +
                        "compiled for (export again with another example, or to .pt)");
  }
}

std::string int8_instructions(const std::function<bool(const std::string&)>& cpu_has) {
  if (cpu_has("amx_int8")) return "AMX-INT8 tiles";
  if (cpu_has("avx512_vnni")) return "AVX512-VNNI";
  if (cpu_has("avx_vnni")) return "AVX-VNNI";
  return "no VNNI or AMX, AVX2's int8 arithmetic (slower than on a CPU with either)";
}

namespace {

// One model's aot_inductor.metadata, checked against this machine; LoadError otherwise.
std::unordered_map<std::string, std::string> read_entries(
    const std::string& path, const std::string& source, const std::string& model,
    const c10::Device& device, const std::function<bool(const std::string&)>& cpu_has) {
  std::unordered_map<std::string, std::string> entries;
  const auto which = model == kPackageModelName ? "" : "its model " + model + ": ";
  try {
    entries = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, model);
  } catch (const c10::Error& e) {
    throw LoadError("cannot load " + source + " as an AOTInductor package: " + which +
                    first_line(e.what_without_backtrace()));
  }
  if (const auto problem = platform_problem(entries, device, cpu_has); !problem.empty()) {
    throw LoadError("cannot load " + source + ": " + which + problem);
  }
  return entries;
}

// The static-batch models kStaticBatchesMetadataKey lists, each read and checked: as many
// inputs as forward's (`forward_inputs`, if described), all static, each of `batch` rows.
std::vector<StaticModel> read_static_models(
    const std::string& json, const std::vector<TensorSpec>& forward_inputs, const std::string& path,
    const std::string& source, const c10::Device& device,
    const std::function<bool(const std::string&)>& cpu_has) {
  std::vector<StaticModel> models;
  try {
    for (const auto& entry : Json::parse(json)) {
      const auto batch = entry.get<int64_t>();
      if (batch < 1) throw std::invalid_argument("a batch size below 1");
      for (const auto& model : models) {
        if (model.batch == batch)
          throw std::invalid_argument("batch " + std::to_string(batch) + " twice");
      }
      models.push_back({batch, static_model_name(batch), {}});
    }
    if (models.empty()) throw std::invalid_argument("an empty list");
  } catch (const std::exception& e) {
    throw LoadError(
        "cannot load " + source + ": its '" + kStaticBatchesMetadataKey +
        "' is not a list of distinct batch sizes of 1 or more: " + first_line(e.what()));
  }
  for (auto& model : models) {
    const auto entries = read_entries(path, source, model.name, device, cpu_has);
    try {
      model.inputs = parse_inputs(value_of(entries, kInputsMetadataKey));
      if (!forward_inputs.empty() && model.inputs.size() != forward_inputs.size()) {
        throw std::invalid_argument(std::to_string(model.inputs.size()) +
                                    " inputs where forward takes " +
                                    std::to_string(forward_inputs.size()));
      }
      for (const auto& spec : model.inputs) {
        if (spec.shape.empty() || spec.shape[0].size != model.batch) {
          throw std::invalid_argument(spec.name + "'s first dimension is not " +
                                      std::to_string(model.batch));
        }
        for (const auto& dimension : spec.shape) {
          if (dimension.size < 0) throw std::invalid_argument(spec.name + " has a dynamic size");
        }
      }
    } catch (const std::exception& e) {
      throw LoadError("cannot load " + source + ": its model " + model.name + "'s '" +
                      kInputsMetadataKey +
                      "' does not describe static inputs: " + first_line(e.what()));
    }
  }
  return models;
}

}  // namespace

PackageDescription read_package(const std::string& path, const std::string& source,
                                const c10::Device& device,
                                const std::function<bool(const std::string&)>& cpu_has) {
  PackageDescription package;
  package.entries = read_entries(path, source, kPackageModelName, device, cpu_has);
  const auto inputs_json = value_of(package.entries, kInputsMetadataKey);
  try {
    if (!inputs_json.empty()) package.inputs = parse_inputs(inputs_json);
  } catch (const std::exception& e) {
    throw LoadError("cannot load " + source + ": its '" + kInputsMetadataKey +
                    "' does not describe forward's inputs: " + first_line(e.what()));
  }
  const auto metadata_json = value_of(package.entries, kMetadataFile);
  if (!metadata_json.empty()) package.metadata = parse_metadata(metadata_json, source);
  const auto isa = value_of(package.entries, "AOTI_CPU_ISA");
  package.description = "none: an AOTInductor package, compiled ahead of time for " +
                        value_of(package.entries, "AOTI_DEVICE_KEY") +
                        (isa.empty() ? "" : " (" + isa + ")") +
                        (inputs_json.empty() ? "; inputs checked by the package's own code" : "");
  const auto static_batches = value_of(package.entries, kStaticBatchesMetadataKey);
  if (!static_batches.empty()) {
    package.static_models =
        read_static_models(static_batches, package.inputs, path, source, device, cpu_has);
    std::string batches;
    for (const auto& model : package.static_models) {
      batches += (batches.empty() ? "" : ", ") + std::to_string(model.batch);
    }
    package.description +=
        "; compiled for batch " + batches + " alone as well (a call of that batch runs that code)";
  }
  if (!package.metadata.quantization.empty()) {
    package.description += "; " + package.metadata.quantization;
    if (device.is_cpu()) package.description += "; int8 on this CPU: " + int8_instructions(cpu_has);
  }
  return package;
}

}  // namespace tsnative
