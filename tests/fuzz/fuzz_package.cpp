// AOTInductor packages (.pt2) up to their compiled code. The first byte picks what the rest is:
//   even: a package file, read as Model::load reads one before it loads the package's shared
//         library -- the format told from the archive, the zip checked (archive_guard), the
//         package's metadata read by LibTorch's package reader, then by tsnative (platform,
//         inputs, labels, preprocessing) -- and a tensor of each described shape checked
//         against its spec;
//   odd:  a call spec (the pytree JSON the library returns for forward's outputs), parsed,
//         typed and unflattened over as many tensors as it has leaves.
// Loading the library itself is running its code: no fuzzer can judge what a program does, and
// a package's code is as trusted as any program its user runs.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <caffe2/serialize/file_adapter.h>

#include "core/archive_guard.h"
#include "core/backends/aoti/package.h"
#include "core/backends/aoti/pytree_spec.h"
#include "core/model_format.h"
#include "fuzz_support.h"

namespace {

void read_package_file(const uint8_t* data, size_t size) {
  static const tsnative_fuzz::ScratchFile scratch("package.pt2");
  const auto& path = scratch.write(data, size);
  std::shared_ptr<caffe2::serialize::ReadAdapterInterface> archive;
  try {
    archive = std::make_shared<caffe2::serialize::FileAdapter>(path);
  } catch (const c10::Error&) {
    return;  // an empty file: Model::load says so before it gets here
  }
  if (tsnative::archive_model_format(archive) != tsnative::ModelFormat::kAotInductor) return;
  if (!tsnative::archive_problem(archive).empty()) return;  // Model::load stops here too
  const auto package = tsnative::read_package(path, "the package", c10::kCPU,
                                              [](const std::string&) { return true; });
  std::vector<at::Tensor> inputs;
  for (const auto& spec : package.inputs) {
    std::vector<int64_t> shape;
    for (const auto& dimension : spec.shape) {
      shape.push_back(dimension.size >= 0 ? dimension.size : dimension.min);
    }
    if (shape.size() > 8 || at::empty(shape, at::kMeta).numel() > (1 << 16)) return;
    inputs.push_back(at::zeros(shape, at::TensorOptions().dtype(spec.dtype)));
  }
  tsnative::check_inputs(package.inputs, inputs);
}

void parse_call_spec(const uint8_t* data, size_t size) {
  tsnative::TreeSpec spec;
  try {
    spec = tsnative::parse_tree_spec(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const std::invalid_argument&) {
    return;  // the backend's LoadError: "cannot load ...: <why>"
  }
  tsnative::tree_type(spec);
  if (spec.leaves() > 1024) return;
  std::vector<at::Tensor> leaves(spec.leaves(), at::zeros({1}));
  tsnative::unflatten(spec, std::move(leaves));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  try {
    if (data[0] % 2 == 0) {
      read_package_file(data + 1, size - 1);
    } else {
      parse_call_spec(data + 1, size - 1);
    }
  } catch (const tsnative::Error& error) {
    tsnative_fuzz::check_error(error);
  }
  return 0;
}
