// An AOTInductor package (.pt2) as its files describe it, read before its compiled code is
// loaded: code built for another device or instruction set must not run at all (an unknown
// instruction kills the process). What tsnative.export writes into aot_inductor.metadata (the
// keys below, labels and preprocessing) is read here, and checked: any package's bytes give a
// description or a LoadError, never more (tests/fuzz/fuzz_package.cpp).
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "core/metadata.h"
#include "core/runtime.h"
#include "core/tensor_spec.h"

namespace tsnative {

// Key of the metadata entry (aot_inductor.metadata) that describes forward's tensor arguments
// as tsnative.export saw them: [{"name", "dtype", "shape": [3, {"name", "min", "max"}, ...]}];
// a dimension is its size, or the range of a dynamic one ("max": null for no upper bound).
inline constexpr const char* kInputsMetadataKey = "tsnative.inputs";

// Key of the metadata entry that names (space-separated, as cpuinfo does: "avx512_bf16") the
// CPU capabilities Inductor's compile flags assumed beyond the ISA it records in AOTI_CPU_ISA:
// it compiles with -mavx512bf16 where the exporting CPU has AVX512-BF16, and says nothing.
inline constexpr const char* kCpuFlagsMetadataKey = "tsnative.cpu_flags";

// The name of a package's main model: the one aoti_compile_and_package writes for an exported
// program, and package_aoti's key for the dynamic model beside static-batch ones.
inline constexpr const char* kPackageModelName = "model";

// Key of the metadata entry (kPackageModelName's) that lists the batch sizes for which the
// package also holds a model compiled for that batch alone, named static_model_name(batch):
// "[1, 8]". A call of such a batch runs it; any other, kPackageModelName.
inline constexpr const char* kStaticBatchesMetadataKey = "tsnative.static_batches";

// Key of the metadata entry that records the Inductor configs the package was compiled with
// (JSON), for whoever asks how it was made.
inline constexpr const char* kInductorConfigsMetadataKey = "tsnative.inductor_configs";

// "batch_8": the model compiled for batch 8 alone.
std::string static_model_name(int64_t batch);

// A model of the package compiled for one batch size, and the inputs it takes (all static).
struct StaticModel {
  int64_t batch = 0;
  std::string name;
  std::vector<TensorSpec> inputs;
};

// Why this machine cannot run code compiled for `metadata`'s device (AOTI_DEVICE_KEY), machine
// (AOTI_MACHINE) and CPU capabilities (AOTI_CPU_ISA's words, kCpuFlagsMetadataKey's flags); ""
// if it can. `cpu_has` says what this CPU has (a test gives another CPU's answers).
std::string platform_problem(
    const std::unordered_map<std::string, std::string>& metadata, const c10::Device& device,
    const std::function<bool(const std::string&)>& cpu_has = tsnative::cpu_has);

// The kInputsMetadataKey entry's JSON as TensorSpecs. Throws std::invalid_argument (or
// nlohmann's parse and type errors) for JSON that does not describe them.
std::vector<TensorSpec> parse_inputs(const std::string& json);

// Throws ArgumentError naming the first of `inputs` (as many as `specs`) whose dtype or shape
// `specs` does not admit.
void check_inputs(const std::vector<TensorSpec>& specs, const std::vector<at::Tensor>& inputs);

// Whether `specs` admit every one of `inputs` (as many), dtype and shape.
bool admits(const std::vector<TensorSpec>& specs, const std::vector<at::Tensor>& inputs);

// The fastest int8 instructions this CPU has for oneDNN's int8 kernels (AMX-INT8, AVX512-VNNI,
// AVX-VNNI), or that it has none of them.
std::string int8_instructions(
    const std::function<bool(const std::string&)>& cpu_has = tsnative::cpu_has);

struct PackageDescription {
  std::unordered_map<std::string, std::string> entries;  // aot_inductor.metadata, as written
  std::vector<TensorSpec> inputs;          // empty if the package does not describe them
  Metadata metadata;                       // labels and preprocessing, if it carries them
  std::vector<StaticModel> static_models;  // kStaticBatchesMetadataKey's, in its order
  // "none: an AOTInductor package, compiled ahead of time for cpu (AVX512)", whether the
  // package's own code checks its inputs, and its static-batch models.
  std::string description;
};

// Reads the package at `path` (named `source` in messages) without loading its code. Throws
// LoadError: not a package, or one compiled for another device, machine or CPU than `device`
// on this machine (`cpu_has`), or with metadata tsnative cannot read (static-batch models
// included: each must be there, built for this machine, its inputs described and static).
PackageDescription read_package(
    const std::string& path, const std::string& source, const c10::Device& device,
    const std::function<bool(const std::string&)>& cpu_has = tsnative::cpu_has);

}  // namespace tsnative
