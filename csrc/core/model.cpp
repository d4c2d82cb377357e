#include "core/model.h"

#include <algorithm>

#include <caffe2/serialize/file_adapter.h>
#include <caffe2/serialize/in_memory_adapter.h>

#include "core/archive_guard.h"
#include "core/backend.h"
#include "core/backends/aoti/backend.h"
#include "core/backends/torchscript/backend.h"
#include "core/errors.h"
#include "core/model_format.h"
#include "core/runtime.h"

namespace tsnative {
namespace {

// The core's edge for loading: whatever LibTorch throws that the steps of a load did not turn
// into a typed error (found by fuzzing: an allocation failure, uncaught in C++, an abort)
// becomes a LoadError naming the file.
template <typename Load>
std::shared_ptr<Model> with_typed_errors(const std::string& source, const Load& load) {
  try {
    return load();
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw LoadError("cannot load " + source + ": " + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    throw LoadError("cannot load " + source + ": " + first_line(e.what()));
  }
}

}  // namespace

std::shared_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  const c10::Device device = resolve_device(options.device);
  if (const auto problem = file_problem(path); !problem.empty()) {
    const bool directory = problem == "it is a directory";
    throw LoadError("cannot load " + quoted(path) + ": " + problem +
                    (directory ? ", not a model file" : ""));
  }
  std::shared_ptr<caffe2::serialize::ReadAdapterInterface> archive;
  try {
    archive = std::make_shared<caffe2::serialize::FileAdapter>(path);
  } catch (const std::exception& e) {
    throw LoadError("cannot load " + quoted(path) + ": " + first_line(e.what()));
  }
  return with_typed_errors(
      quoted(path), [&] { return load_archive(path, quoted(path), device, options, archive); });
}

std::shared_ptr<Model> Model::load_from_memory(const void* data, size_t size,
                                               const LoadOptions& options) {
  const c10::Device device = resolve_device(options.device);
  // The first bytes tell a zip ("PK\x03\x04") from whatever else was handed over.
  const std::string first(static_cast<const char*>(data), std::min<size_t>(size, 8));
  const std::string source = "the model in memory (" + std::to_string(size) + " bytes" +
                             (size == 0 ? "" : ", starting '" + first + "'") + ")";
  if (size == 0) throw LoadError("cannot load " + source + ": it is empty");
  return with_typed_errors(source, [&] {
    return load_archive(
        "", source, device, options,
        std::make_shared<caffe2::serialize::MemoryReadAdapter>(data, static_cast<off_t>(size)));
  });
}

std::shared_ptr<Model> Model::load_archive(
    const std::string& path, const std::string& source, const c10::Device& device,
    const LoadOptions& options,
    const std::shared_ptr<caffe2::serialize::ReadAdapterInterface>& archive) {
  const auto format = archive_model_format(archive);
  if (format == ModelFormat::kOnnx) {
    throw UnsupportedFormatError(
        source +
        " is an ONNX model, and this core runs TorchScript and AOTInductor packages: run it "
        "from Python, where tsnative.load runs ONNX models with ONNX Runtime (pip install "
        "onnxruntime)");
  }
  if (const auto problem = archive_problem(archive); !problem.empty()) {
    throw LoadError(source + " is corrupt: " + problem);
  }
  std::unique_ptr<const Backend> backend;
  if (format == ModelFormat::kAotInductor) {
    backend = AotiBackend::load(path, source, device, options);
  } else {
    backend = TorchScriptBackend::load(source, device, options, archive);
  }
  return std::shared_ptr<Model>(new Model(path, format, std::move(backend)));
}

Model::Model(std::string path, ModelFormat format, std::unique_ptr<const Backend> backend)
    : path_(std::move(path)), format_(format), backend_(std::move(backend)) {}

Model::~Model() = default;

const Metadata& Model::metadata() const { return backend_->metadata(); }

const std::vector<TensorSpec>& Model::inputs() const { return backend_->inputs(); }

const std::string& Model::source() const { return backend_->source(); }

const c10::Device& Model::device() const { return backend_->device(); }

std::string Model::optimization() const { return backend_->optimization(); }

const c10::FunctionSchema& Model::find(const std::string& method) const {
  const auto found = backend_->signatures().find(method);
  if (found == backend_->signatures().end()) {
    std::string known;
    for (const auto& name : methods()) {
      known += (known.empty() ? "" : ", ") + name;
    }
    throw InferenceError(source() + " has no method '" + method + "' (it has: " + known + ")");
  }
  return found->second;
}

c10::IValue Model::run(const std::string& method, std::vector<c10::IValue> args) const {
  return backend_->run(method, find(method), std::move(args));
}

c10::IValue Model::run_object_method(const c10::intrusive_ptr<c10::ivalue::Object>& object,
                                     const std::string& method,
                                     std::vector<c10::IValue> args) const {
  return backend_->run_object_method(object, method, std::move(args));
}

std::vector<std::pair<std::string, at::Tensor>> Model::named_parameters() const {
  return backend_->named_parameters();
}

std::vector<std::pair<std::string, at::Tensor>> Model::named_buffers() const {
  return backend_->named_buffers();
}

std::vector<std::pair<std::string, c10::IValue>> Model::attributes() const {
  return backend_->attributes();
}

c10::IValue Model::forward(std::vector<c10::IValue> args) const {
  return run("forward", std::move(args));
}

std::vector<std::string> Model::methods() const {
  std::vector<std::string> names;
  for (const auto& entry : backend_->signatures()) {
    names.push_back(entry.first);
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool Model::has_method(const std::string& method) const {
  return backend_->signatures().count(method) > 0;
}

const c10::FunctionSchema& Model::signature(const std::string& method) const {
  return find(method);
}

}  // namespace tsnative
